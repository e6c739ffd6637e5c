"""Training data for the torch backend, chosen by the spec's ``data`` section (or ``--data``).

The samples come from netspec.train.sources (shared with the Keras backend): ``digits``
(scikit-learn's 8×8 handwritten digits, no download), ``cifar10`` (the python-batches folder),
``imagefolder`` (``train/CLASS/*.jpg`` and ``val/CLASS/*.jpg``) and ``synthetic`` (random images,
for benchmarks). Images become the spec's input with torchvision's v2 transforms: grayscale to
three channels when the spec wants three, resize, random or centre crop, flips, scaling to [0, 1]
and normalization. Every user mistake is a SpecError naming the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, get_worker_info

from netspec.analysis.checker import CheckedNet
from netspec.errors import DataError, Location, Problem, UserError
from netspec.language.spec import DataSpec
from netspec.train.sources import (
    PREPARED_LIMIT_BYTES,
    ImageArrays,
    ImageFiles,
    TokenArrays,
    decode_rgb,
    load_sources,
    normalization,
    source_channels,
)


@dataclass
class Datasets:
    train: ArrayImages | FileImages | TokenSequences
    val: ArrayImages | FileImages | TokenSequences
    classes: list[str]


class TokenSequences(Dataset):
    """(token ids, label) pairs: a text dataset's sequences as they are, no transform."""

    def __init__(self, arrays: TokenArrays):
        self.ids, self.labels = torch.from_numpy(arrays.ids), arrays.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.ids[index], int(self.labels[index])


def transforms(net: CheckedNet, data: DataSpec, *, train: bool, source_channels: int):
    """The v2 pipeline from a (C, H, W) uint8 image to the spec's normalized float input."""
    import torchvision.transforms.v2 as T

    channels, height, width = net.input_shape
    steps: list = [T.ToImage()]
    if source_channels != channels:  # grayscale for an RGB input (sources checked the pair)
        steps.append(T.Grayscale(num_output_channels=3))
    if data.resize is not None:
        steps.append(T.Resize(data.resize, antialias=True))
        steps.append(T.RandomCrop((height, width)) if train and data.random_crop else T.CenterCrop((height, width)))
    else:
        steps.append(T.Resize((height, width), antialias=True))
    if train and data.hflip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(*map(list, normalization(data, channels)))]
    return T.Compose(steps)


class ArrayImages(Dataset):
    """(image, label) pairs from uint8 arrays, through a transform. A deterministic transform (no
    random crop or flip) is applied once per image and its results kept (``prepare``), so epochs
    and evaluations index prepared tensors instead of transforming every image again."""

    def __init__(self, arrays: ImageArrays, transform, *, deterministic: bool):
        self.images, self.labels, self.transform = torch.from_numpy(arrays.images), arrays.labels, transform
        self.deterministic = deterministic
        self.prepared: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        label = self.labels[index]  # an int, or a label per pixel
        label = int(label) if label.ndim == 0 else torch.from_numpy(label)
        if self.prepared is not None:
            return self.prepared[index], label
        return self.transform(self.images[index]), label

    def prepare(self, limit_bytes: int = PREPARED_LIMIT_BYTES) -> bool:
        """Transform every image now and keep the results, when the transform is deterministic and
        they fit in ``limit_bytes``; whether they are kept."""
        if self.prepared is not None or not self.deterministic or not len(self):
            return self.prepared is not None
        first = self.transform(self.images[0])
        if first.numel() * first.element_size() * len(self) > limit_bytes:
            return False
        prepared = torch.empty((len(self), *first.shape), dtype=first.dtype)
        prepared[0] = first
        for index in range(1, len(self)):
            prepared[index] = self.transform(self.images[index])
        self.prepared = prepared
        return True

    def batches(self, indices: list[int], batch_size: int):
        """The prepared (images, labels) batches of these indices, as a DataLoader would collate them."""
        assert self.prepared is not None
        labels = torch.as_tensor(self.labels, dtype=torch.int64)
        for start in range(0, len(indices), batch_size):
            chunk = torch.as_tensor(indices[start:start + batch_size], dtype=torch.int64)
            yield self.prepared[chunk], labels[chunk]


class WorkerSpecError(DataError):
    """A SpecError raised in a DataLoader worker process, rebuilt as itself in the main process.

    torch sends only a worker exception's type and traceback text across, then calls
    ``type(message=text)`` (for a type with a ``message`` attribute) or ``type(text)``; a plain
    SpecError cannot be rebuilt from that text, so the user saw torch's RuntimeError and the
    worker's traceback. This one carries its problems as JSON in its text and rebuilds them."""

    message = "netspec"  # torch's ExceptionWrapper.reraise passes the text as message=
    MARK = "netspec-problems:"

    def __init__(self, problems: list[Problem] | str | None = None, *, message: str | None = None) -> None:
        text = message if message is not None else problems
        if isinstance(text, str):
            problems = _problems_from_text(text)
        assert not isinstance(problems, str)  # a text (given either way) was read above
        super().__init__(list(problems or []))

    def __str__(self) -> str:
        return self.MARK + json.dumps([p.to_json() for p in self.problems])


def _problems_from_text(text: str) -> list[Problem]:
    found = text.rfind(WorkerSpecError.MARK)
    if found < 0:
        return [Problem(f"a data-loading worker failed: {text.strip().splitlines()[-1] if text.strip() else text}")]
    doc, _ = json.JSONDecoder().raw_decode(text[found + len(WorkerSpecError.MARK):])
    return [Problem(p["message"], Location(p["file"], p["line"] or 0, p["column"] or 0) if p["file"] else None,
                    p["layer"], p["hint"]) for p in doc]


class FileImages(Dataset):
    """(image, label) pairs decoded from image files (RGB), through a transform."""

    def __init__(self, files: ImageFiles, transform):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        try:
            image = decode_rgb(self.files.paths[index])
        except UserError as exc:
            if get_worker_info() is None:
                raise
            raise WorkerSpecError(exc.problems) from None  # a worker's error, told as the main process tells it
        return self.transform(image), int(self.files.labels[index])


def load_datasets(net: CheckedNet, data: DataSpec, *, seed: int = 0) -> Datasets:
    sources = load_sources(net, data, seed=seed)
    if isinstance(sources.train, TokenArrays) and isinstance(sources.val, TokenArrays):
        return Datasets(TokenSequences(sources.train), TokenSequences(sources.val), sources.classes)

    def wrap(source: ImageArrays | ImageFiles, train: bool) -> ArrayImages | FileImages:
        transform = transforms(net, data, train=train, source_channels=source_channels(source))
        if isinstance(source, ImageFiles):
            return FileImages(source, transform)
        return ArrayImages(source, transform, deterministic=not data.transform_is_random(train=train))

    assert not isinstance(sources.train, TokenArrays) and not isinstance(sources.val, TokenArrays)  # images
    return Datasets(wrap(sources.train, True), wrap(sources.val, False), sources.classes)

"""Training data for the torch backend, chosen by the spec's ``data`` section (or ``--data``).

Sources: ``digits`` (scikit-learn's 8×8 handwritten digits, shipped inside the package, so no
download), ``cifar10`` (the python-batches folder), ``imagefolder`` (``train/CLASS/*.jpg`` and
``val/CLASS/*.jpg``) and ``synthetic`` (random images, for benchmarks). Images become the spec's
input with torchvision's v2 transforms: grayscale to three channels when the spec wants three,
resize, random or centre crop, flips, scaling to [0, 1] and normalization. Every user mistake is
a SpecError naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from netspec.check import CheckedNet
from netspec.errors import SpecError
from netspec.spec import DataSpec

SYNTHETIC_TRAIN, SYNTHETIC_VAL = 1024, 256


@dataclass
class Datasets:
    train: Dataset
    val: Dataset
    classes: list[str]


def transforms(net: CheckedNet, data: DataSpec, *, train: bool, source_channels: int):
    """The v2 pipeline from a (C, H, W) uint8 image to the spec's normalized float input."""
    import torchvision.transforms.v2 as T

    channels, height, width = net.input_shape
    steps: list = [T.ToImage()]
    if source_channels != channels:
        if (source_channels, channels) != (1, 3):
            raise SpecError.single(f"the data has {source_channels}-channel images but the spec's input has "
                                   f"{channels} channels", hint="change the spec's input channels")
        steps.append(T.Grayscale(num_output_channels=3))
    if data.resize is not None:
        steps.append(T.Resize(data.resize, antialias=True))
        steps.append(T.RandomCrop((height, width)) if train and data.random_crop else T.CenterCrop((height, width)))
    else:
        steps.append(T.Resize((height, width), antialias=True))
    if train and data.hflip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(list(data.mean[:channels]), list(data.std[:channels]))]
    return T.Compose(steps)


class Transformed(Dataset):
    """Applies a transform to the images of a dataset yielding (image, label)."""

    def __init__(self, base: Dataset, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return self.transform(image), label


def load_datasets(net: CheckedNet, data: DataSpec, *, seed: int = 0) -> Datasets:
    if len(net.input_shape) != 3:
        raise SpecError.single("training needs an image input (channels x height x width)")
    builders = {"digits": _digits, "cifar10": _cifar10, "imagefolder": _imagefolder, "synthetic": _synthetic}
    if data.dataset not in builders:
        raise SpecError.single(f"the torch trainer cannot read the '{data.dataset}' dataset yet",
                               hint=f"use one of: {', '.join(builders)}")
    datasets = builders[data.dataset](net, data, seed)
    _check_classes(net, len(datasets.classes))
    return datasets


def _split(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    held_out = max(1, round(count * fraction))
    return sorted(order[held_out:]), sorted(order[:held_out])


def _digits(net: CheckedNet, data: DataSpec, seed: int) -> Datasets:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images * (255.0 / 16.0)).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    base = TensorDataset(images, labels)
    train_idx, val_idx = _split(len(base), data.val_fraction, seed)
    return Datasets(
        train=Transformed(Subset(base, train_idx), transforms(net, data, train=True, source_channels=1)),
        val=Transformed(Subset(base, val_idx), transforms(net, data, train=False, source_channels=1)),
        classes=[str(d) for d in range(10)],
    )


def _cifar10(net: CheckedNet, data: DataSpec, seed: int) -> Datasets:
    from netspec.train.cifar import load_cifar10

    if data.path is None:
        raise SpecError.single("the cifar10 dataset needs a folder",
                               hint="pass --data-path DIR (the unpacked cifar-10-batches-py folder)")
    train_x, train_y, test_x, test_y, names = load_cifar10(data.path)
    return Datasets(
        train=Transformed(TensorDataset(torch.from_numpy(train_x), torch.from_numpy(train_y)),
                          transforms(net, data, train=True, source_channels=3)),
        val=Transformed(TensorDataset(torch.from_numpy(test_x), torch.from_numpy(test_y)),
                        transforms(net, data, train=False, source_channels=3)),
        classes=names,
    )


def _synthetic(net: CheckedNet, data: DataSpec, seed: int) -> Datasets:
    channels, height, width = net.input_shape
    classes = net.output_shape[0]
    generator = torch.Generator().manual_seed(seed)

    def make(count: int) -> TensorDataset:
        images = torch.randint(0, 256, (count, channels, height, width), dtype=torch.uint8, generator=generator)
        return TensorDataset(images, torch.randint(0, classes, (count,), generator=generator))

    return Datasets(
        train=Transformed(make(SYNTHETIC_TRAIN), transforms(net, data, train=True, source_channels=channels)),
        val=Transformed(make(SYNTHETIC_VAL), transforms(net, data, train=False, source_channels=channels)),
        classes=[f"class{i}" for i in range(classes)],
    )


def _imagefolder(net: CheckedNet, data: DataSpec, seed: int) -> Datasets:
    from torchvision.datasets import ImageFolder

    if data.path is None:
        raise SpecError.single("the imagefolder dataset needs a folder",
                               hint="pass --data-path DIR (with train/CLASS/*.jpg and val/CLASS/*.jpg)")
    root = Path(data.path)
    splits = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise SpecError.single(f"no '{split}' folder in {root}",
                                   hint="an imagefolder dataset has train/CLASS/*.jpg and val/CLASS/*.jpg")
        try:
            splits[split] = ImageFolder(str(folder), loader=_decode)
        except (FileNotFoundError, RuntimeError) as exc:
            raise SpecError.single(f"{folder} holds no images: {exc}",
                                   hint="put images in one subfolder per class, e.g. train/cat/001.jpg") from None
    if splits["train"].classes != splits["val"].classes:
        raise SpecError.single(f"train and val in {root} have different classes",
                               hint="give both the same class subfolders")
    return Datasets(  # images are decoded as RGB
        train=Transformed(splits["train"], transforms(net, data, train=True, source_channels=3)),
        val=Transformed(splits["val"], transforms(net, data, train=False, source_channels=3)),
        classes=splits["train"].classes,
    )


def _decode(path: str):
    """Open an image as RGB; an undecodable file stops the run with its name."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise SpecError.single(f"cannot decode image {path}: {exc}",
                               hint="remove or replace the file, then resume the run") from None


def _check_classes(net: CheckedNet, classes: int) -> None:
    last = net.layers[-1]
    if net.output_shape != (classes,):
        raise SpecError.single(
            f"the dataset has {classes} classes but the spec's output layer '{last.name}' yields "
            f"{'×'.join(map(str, net.output_shape))} values", last.location, layer=last.name,
            hint=f"--set num_classes={classes} (if the spec has that param) or change the output layer")

"""Where training images come from, framework-free, so both backends train on the same samples:
the same digits split, the same synthetic images, the same CIFAR-10 arrays, the same image-folder
listing and class order. Each backend turns these into its own pipeline (torchvision transforms,
tf.data) for resizing, cropping, flipping and normalizing.

Arrays are uint8, channels first (N, C, H, W); labels are int64, one per image (N,), or one per
pixel (N, H, W) for a network that classifies every pixel (its output classes × H × W, a
segmentation network such as a U-Net).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspec.analysis.checker import CheckedNet
from netspec.errors import DataError, counted
from netspec.language.spec import DataSpec
from netspec.layers import fmt_shape
from netspec.layers.base import IDS, layout_of

# random labels: validation only exercises the eval path, so a few batches of it are enough
SYNTHETIC_TRAIN, SYNTHETIC_VAL = 1024, 64
# the most memory the transformed images of one in-memory split may take for a backend to keep them
PREPARED_LIMIT_BYTES = 1 << 30
# what torchvision's ImageFolder accepts, so both backends list the same files
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class ImageArrays:
    images: np.ndarray  # (N, C, H, W) uint8
    labels: np.ndarray  # (N,) int64, or (N, H, W) for per-pixel labels

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ImageFiles:
    paths: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TokenArrays:
    """Token id sequences (a text's bytes, say) and one label each."""

    ids: np.ndarray  # (N, L) int64
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Sources:
    train: ImageArrays | ImageFiles | TokenArrays
    val: ImageArrays | ImageFiles | TokenArrays
    classes: list[str]


def image_input(net: CheckedNet) -> tuple[int, int, int]:
    """The spec's input as (channels, height, width); an image dataset needs an image input."""
    if len(net.input_shape) != 3:
        layout = layout_of(net.input_shape)
        text = layout is IDS
        raise DataError.single(
            f"netspec train's datasets are images (channels × height × width) or text, and this network takes "
            f"{layout.kind}, {fmt_shape(net.input_shape)} ({layout.name})", net.source.location(("input",)),
            hint=f"train it on text: data: {{dataset: {TEXT_DATASETS[0]}}}" if text else
                 "check, export and build work for it: train the built model with your own data loop "
                 "(netspec.build(spec) gives the model)")
    return net.input_shape


def load_sources(net: CheckedNet, data: DataSpec, *, seed: int = 0) -> Sources:
    if data.dataset in TEXT_DATASETS or (data.dataset == "synthetic" and layout_of(net.input_shape) is IDS):
        sources = (code_lines if data.dataset == "code_lines" else synthetic_ids)(net, data, seed)
        check_classes(net, len(sources.classes))
        return sources
    _, height, width = image_input(net)
    if data.resize is not None and data.resize < min(height, width):
        raise DataError.single(f"data.resize {data.resize} is smaller than the {height}×{width} input it is cropped to",
                               hint=f"set data.resize to at least {max(height, width)}, or null to resize to the input")
    builders = {"digits": digits, "cifar10": cifar10, "imagefolder": image_folders, "synthetic": synthetic,
                "digit_masks": digit_masks}
    check_label_kind(net, data)
    sources = builders[data.dataset](net, data, seed)
    check_classes(net, len(sources.classes))
    assert not isinstance(sources.train, TokenArrays)  # an image dataset
    check_channels(net, source_channels(sources.train))
    normalization(data, net.input_shape[0], net.source.location(("data",)))
    return sources


def normalization(data: DataSpec, channels: int, where=None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std to normalise each input channel with: the spec's, one value per channel.
    The defaults are ImageNet's three; a 1-channel input gets their averages (never the red
    channel's alone)."""
    stats = {}
    for key in ("mean", "std"):
        values = getattr(data, key)
        if len(values) != channels:
            if key in data.model_fields_set or channels != 1:
                raise DataError.single(f"data.{key} has {counted(len(values), 'value')} but the input has "
                                       f"{counted(channels, 'channel')}",
                                       where, hint=f"give one value per input channel, e.g. {key}: "
                                                   f"{[round(sum(values) / len(values), 3)] * channels}")
            values = (round(sum(values) / len(values), 3),)
        stats[key] = tuple(values)
    return stats["mean"], stats["std"]


def source_channels(source: ImageArrays | ImageFiles) -> int:
    """Channels of a source's images: files are decoded as RGB."""
    return 3 if isinstance(source, ImageFiles) else source.images.shape[1]


def check_channels(net: CheckedNet, channels: int) -> None:
    """The data's channels must be the spec's, or grayscale for a 3-channel input (copied to RGB)."""
    wanted = net.input_shape[0]
    if channels != wanted and (channels, wanted) != (1, 3):
        raise DataError.single(f"the data has {channels}-channel images but the spec's input has {wanted} channels",
                               net.source.location(("input",)), hint="change the spec's input channels")


def split_indices(count: int, fraction: float, seed: int, where=None) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/validation split of ``count`` samples (each part sorted); both parts must
    hold samples (``where``: the spec location blamed when they do not)."""
    order = np.random.default_rng(seed).permutation(count)
    held_out = max(1, round(count * fraction))
    if held_out >= count:
        raise DataError.single(f"data.val_fraction {fraction} holds out {held_out:,} of the dataset's {count:,} "
                               "samples, leaving none to train on", where,
                               hint=f"use a smaller share, e.g. val_fraction: 0.2 ({round(count * 0.2):,} samples)")
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The training samples' order in an epoch: a function of (seed, epoch) only, so a resumed run
    visits the same samples in the same order as an uninterrupted one."""
    return np.random.default_rng([seed, epoch]).permutation(size)


def digits(net: CheckedNet, data: DataSpec, seed: int) -> Sources:
    """scikit-learn's 1,797 handwritten 8×8 digits (values 0..16), shipped inside the package."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    train, val = split_indices(len(labels), data.val_fraction, seed,
                               net.source.location(("data", "val_fraction")))
    return Sources(ImageArrays(images[train], labels[train]), ImageArrays(images[val], labels[val]),
                   [str(d) for d in range(10)])


# the ink of a digit: pixels at least this dark (of 16) belong to the digit, the others to the background
DIGIT_INK = 4


def digit_masks(net: CheckedNet, data: DataSpec, seed: int) -> Sources:
    """A segmentation task from scikit-learn's digits: each 8×8 digit enlarged to the input's size
    (whole pixels repeated), and each pixel labelled with what it shows: 0 for the background, 1 + d
    for the ink of digit d (at least DIGIT_INK of 16 dark). A network must find the ink and read the
    whole digit to name it; the same split as ``digits``."""
    from sklearn.datasets import load_digits

    _, height, width = image_input(net)
    if height % 8 or width % 8:
        raise DataError.single(f"digit_masks enlarges 8×8 digits by whole pixels, and the input is {height}×{width}",
                               net.source.location(("input",)), hint="use an input size that is a multiple of 8, "
                                                                     "e.g. [1, 32, 32]")
    bunch = load_digits()
    grow = np.ones((1, height // 8, width // 8), dtype=np.uint8)
    values = np.kron(bunch.images.astype(np.uint8), grow)  # (N, H, W), 0..16
    images = np.round(values * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = np.where(values >= DIGIT_INK, bunch.target[:, None, None] + 1, 0).astype(np.int64)
    train, val = split_indices(len(labels), data.val_fraction, seed, net.source.location(("data", "val_fraction")))
    return Sources(ImageArrays(images[train], labels[train]), ImageArrays(images[val], labels[val]),
                   ["background", *(f"digit {d}" for d in range(10))])


PER_PIXEL_DATASETS = ("digit_masks",)
TEXT_DATASETS = ("code_lines",)
# a byte per token: ids 1..256, and 0 pads a short line
BYTE_VOCABULARY = 257
CODE_LINES_PER_LANGUAGE = 4000
CODE_LINE_MIN_CHARS = 12


def text_input(net: CheckedNet) -> int:
    """The length of the token id sequences the network takes, with an embedding of every byte."""
    if layout_of(net.input_shape) is not IDS:
        layout = layout_of(net.input_shape)
        raise DataError.single(f"the text datasets give token ids, and this network takes {layout.kind}, "
                               f"{fmt_shape(net.input_shape)}", net.source.location(("input",)),
                               hint="take token ids and embed them: input: {shape: [64], layout: ids}, then "
                                    f"{{type: embedding, num_embeddings: {BYTE_VOCABULARY}, embedding_dim: 32}}")
    embedding = next(cl for cl in net.layers if cl.layer.takes_ids)
    if vocabulary(net) < BYTE_VOCABULARY:
        raise DataError.single(f"a text's tokens are its bytes, ids 1 to 256 (0 pads a short line), and embedding "
                               f"'{embedding.name}' has {embedding.layer.num_embeddings} ids",  # type: ignore[attr-defined]
                               embedding.location, layer=embedding.name, hint=f"num_embeddings: {BYTE_VOCABULARY}")
    return net.input_shape[0]


def code_language_files() -> dict[str, list[Path]]:
    """Source files that any Python installation has, by language: the standard library's Python,
    the C headers of Python and NumPy, and the shell scripts among the system's programs and
    configuration (a shell #! line, or a .sh name)."""
    import sysconfig

    import numpy

    def files(root: str | Path, *patterns: str) -> list[Path]:
        root = Path(root)
        return sorted(p for pattern in patterns for p in root.rglob(pattern) if p.is_file()) if root.is_dir() else []

    programs = {p.resolve() for folder in ("/usr/bin", "/bin", "/usr/sbin", "/sbin") if Path(folder).is_dir()
                for p in Path(folder).iterdir() if p.is_file()}
    shell = sorted({*(p for p in programs if _shell_script(p)), *files("/etc", "*.sh")})
    return {"python": files(sysconfig.get_path("stdlib"), "*.py")[:3000],
            "c": files(sysconfig.get_path("include"), "*.h") + files(numpy.get_include(), "*.h"),
            "shell": shell}


def _shell_script(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            first = handle.readline(64)
    except OSError:
        return False
    return first.startswith(b"#!") and any(name in first for name in (b"/sh", b"bash", b"dash", b"/env sh"))


def code_lines(net: CheckedNet, data: DataSpec, seed: int) -> Sources:
    """Which language a line of source code is in: Python, C or shell, from the files every Python
    installation has (code_language_files). Lines of at least CODE_LINE_MIN_CHARS characters, each
    once, as many of each language (up to CODE_LINES_PER_LANGUAGE, drawn with the seed); each byte
    is a token (its value + 1), the line cut to the input's length or padded with 0 in front of it."""
    length = text_input(net)
    rng = np.random.default_rng(seed)
    lines: dict[str, list[bytes]] = {}
    for language, paths in code_language_files().items():
        found: set[bytes] = set()
        for path in paths:
            try:
                text = path.read_bytes()[:1 << 20]
            except OSError:
                continue
            found.update(line.strip() for line in text.splitlines() if len(line.strip()) >= CODE_LINE_MIN_CHARS)
        lines[language] = sorted(found)
    per_language = min(CODE_LINES_PER_LANGUAGE, *(len(found) for found in lines.values()))
    if per_language < 100:
        scarce = min(lines, key=lambda language: len(lines[language]))
        raise DataError.single(f"this machine has only {len(lines[scarce])} lines of {scarce} source code to learn "
                               "from", hint="the code_lines dataset needs Python's standard library and C "
                                            "headers, and the system's shell scripts")
    ids, labels = [], []
    for label, language in enumerate(lines):
        for index in sorted(rng.choice(len(lines[language]), per_language, replace=False)):
            line = np.frombuffer(lines[language][index][:length], dtype=np.uint8).astype(np.int64) + 1
            ids.append(np.pad(line, (length - len(line), 0)))  # in front: a line's last byte is the last step
            labels.append(label)
    ids_array, labels_array = np.stack(ids), np.asarray(labels, dtype=np.int64)
    train, val = split_indices(len(labels_array), data.val_fraction, seed,
                               net.source.location(("data", "val_fraction")))
    return Sources(TokenArrays(ids_array[train], labels_array[train]), TokenArrays(ids_array[val], labels_array[val]),
                   list(lines))


def vocabulary(net: CheckedNet) -> int:
    """How many token ids a network that takes ids looks up: its embedding's."""
    return next(cl for cl in net.layers if cl.layer.takes_ids).layer.num_embeddings  # type: ignore[attr-defined]


def synthetic_ids(net: CheckedNet, data: DataSpec, seed: int) -> Sources:
    """Random token ids and labels, for a network that takes ids: for benchmarks, not learning."""
    length, classes, ids = net.input_shape[0], net.output_shape[0], vocabulary(net)
    rng = np.random.default_rng(seed)

    def make(count: int) -> TokenArrays:
        return TokenArrays(rng.integers(0, ids, (count, length), dtype=np.int64),
                           rng.integers(0, classes, count, dtype=np.int64))

    return Sources(make(SYNTHETIC_TRAIN), make(SYNTHETIC_VAL), [f"class{i}" for i in range(classes)])


def per_pixel(net: CheckedNet) -> bool:
    """Whether the network classifies every pixel: its output is classes × H × W at its image input's size."""
    return len(net.output_shape) == 3 and len(net.input_shape) == 3 and net.output_shape[1:] == net.input_shape[1:]


def label_positions(net: CheckedNet) -> int:
    """How many labels each sample has: one per pixel for a per-pixel network, else one."""
    return math.prod(net.output_shape[1:]) if per_pixel(net) else 1


def check_label_kind(net: CheckedNet, data: DataSpec) -> None:
    """A per-pixel network needs a dataset with a label per pixel (and no crop, flip or resize,
    which would have to move the labels too); an image classifier one label per image."""
    where = net.source.location(("data", "dataset"))
    last = net.layers[-1]
    if per_pixel(net) and data.dataset not in (*PER_PIXEL_DATASETS, "synthetic"):
        raise DataError.single(f"the network labels every pixel (its output is {fmt_shape(net.output_shape)}), and "
                               f"the {data.dataset} dataset has one label per image", where,
                               hint=f"use a dataset with a label per pixel: {', '.join(PER_PIXEL_DATASETS)}")
    if data.dataset in PER_PIXEL_DATASETS and not per_pixel(net):
        _, height, width = image_input(net)
        raise DataError.single(f"the {data.dataset} dataset labels every pixel, and the output layer '{last.name}' "
                               f"yields {fmt_shape(net.output_shape)}, not classes × {height}×{width}", last.location,
                               layer=last.name, hint=f"end the network in one score per class at every pixel, e.g. "
                                                     f"a 1×1 conv2d to the classes at {height}×{width}")
    moving = [key for key, off in (("resize", None), ("random_crop", False), ("hflip", False))
              if getattr(data, key) != off]
    if per_pixel(net) and moving:
        off = ", ".join(f"{key}: {'null' if key == 'resize' else 'false'}" for key in moving)
        raise DataError.single(f"data.{moving[0]} would move the pixels but not their labels",
                               net.source.location(("data", moving[0])), hint=f"set data.{off}")


def cifar10(net: CheckedNet, data: DataSpec, seed: int) -> Sources:
    from netspec.train.cifar import load_cifar10

    if data.path is None:
        raise DataError.single("the cifar10 dataset needs a folder",
                               hint="pass --data-path DIR (the unpacked cifar-10-batches-py folder)")
    train_x, train_y, test_x, test_y, names = load_cifar10(data.path)
    return Sources(ImageArrays(train_x, train_y), ImageArrays(test_x, test_y), names)


def synthetic(net: CheckedNet, data: DataSpec, seed: int) -> Sources:
    """Random images at the spec's input size and random labels (one per pixel for a network that
    classifies every pixel): for benchmarks, not learning."""
    channels, height, width = image_input(net)
    classes = net.output_shape[0]
    rng = np.random.default_rng(seed)
    label_shape = (height, width) if per_pixel(net) else ()

    def make(count: int) -> ImageArrays:
        return ImageArrays(rng.integers(0, 256, (count, channels, height, width), dtype=np.uint8),
                           rng.integers(0, classes, (count, *label_shape), dtype=np.int64))

    return Sources(make(SYNTHETIC_TRAIN), make(SYNTHETIC_VAL), [f"class{i}" for i in range(classes)])


def image_folders(net: CheckedNet, data: DataSpec, seed: int) -> Sources:
    """``train/CLASS/*.jpg`` and ``val/CLASS/*.jpg``, classes in name order (as torchvision's ImageFolder).
    Without ``val/``, a seeded ``data.val_fraction`` of ``train/`` is held out for validation."""
    if data.path is None:
        raise DataError.single("the imagefolder dataset needs a folder",
                               hint="pass --data-path DIR (with train/CLASS/*.jpg and val/CLASS/*.jpg)")
    root = Path(data.path)
    if (root / "train").is_dir() and not (root / "val").exists():  # one folder: data.val_fraction held out
        files, classes = list_images(root, "train")
        train, val = split_indices(len(files), data.val_fraction, seed, net.source.location(("data", "val_fraction")))
        return Sources(ImageFiles([files.paths[i] for i in train], files.labels[train]),
                       ImageFiles([files.paths[i] for i in val], files.labels[val]), classes)
    splits = {split: list_images(root, split) for split in ("train", "val")}
    (train_files, train_classes), (val_files, val_classes) = splits["train"], splits["val"]
    if train_classes != val_classes:
        raise DataError.single(f"train and val in {root} have different classes",
                               hint="give both the same class subfolders")
    return Sources(train_files, val_files, train_classes)


def list_images(root: Path, split: str) -> tuple[ImageFiles, list[str]]:
    folder = root / split
    if not folder.is_dir():
        raise DataError.single(f"no '{split}' folder in {root}",
                               hint="an imagefolder dataset has train/CLASS/*.jpg, and val/CLASS/*.jpg or else "
                                    "data.val_fraction of train/ held out")
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                paths.append(str(path))
                labels.append(label)
    if not paths:
        raise DataError.single(f"{folder} holds no images",
                               hint="put images in one subfolder per class, e.g. train/cat/001.jpg")
    return ImageFiles(paths, np.asarray(labels, dtype=np.int64)), classes


def decode_rgb(path: str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, decoded by Pillow for both backends; an undecodable
    file, or one too large to be an image rather than a decompression bomb (more pixels than
    Pillow's MAX_IMAGE_PIXELS), stops the run with its name."""
    from PIL import Image, UnidentifiedImageError

    _refuse_decompression_bombs()
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))  # a writable copy (torch warns on read-only arrays)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        import re

        size = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(size.group(1)):,} pixels" if size else "its size"
        raise DataError.single(f"refusing to decode image {path}: {pixels} is more than Pillow's limit of "
                               f"{Image.MAX_IMAGE_PIXELS:,} (a decompression bomb?)",
                               hint="remove the file, or shrink the image, then resume the run") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError.single(f"cannot decode image {path}: {exc}",
                               hint="remove or replace the file, then resume the run") from None


def _refuse_decompression_bombs() -> None:
    """Pillow only warns about an image between its pixel limit and twice that, and decodes it;
    make that warning (and only it) an error, so that decode_rgb refuses it. (Adding the same
    filter again only moves it to the front: the list does not grow.)"""
    import warnings

    from PIL import Image

    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def check_classes(net: CheckedNet, classes: int) -> None:
    last = net.layers[-1]
    if net.output_shape[0] != classes or (net.output_shape != (classes,) and not per_pixel(net)):
        hint = f"--set num_classes={classes} (if the spec has that param) or change the output layer"
        if len(net.output_shape) > 1 and not per_pixel(net):  # scores at every position, not one vector
            hint = ("end in one vector per sample: an lstm or gru without return_sequences, select of one token, "
                    "or global pooling, then a linear layer to the classes")
        raise DataError.single(
            f"the dataset has {classes} classes but the spec's output layer '{last.name}' yields "
            f"{'×'.join(map(str, net.output_shape))} values", last.location, layer=last.name, hint=hint)

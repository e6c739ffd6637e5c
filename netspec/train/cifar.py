"""CIFAR-10 in its "python version" layout (data_batch_1..5, test_batch, batches.meta), read with a
restricted unpickler: the files are pickles, and a pickle from a stranger could run code, so only
the few classes a CIFAR batch needs (NumPy arrays and dtypes) may be rebuilt."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from netspec.errors import DataError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
ALLOWED_CLASSES = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_CLASSES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _load_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            batch = _CifarUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DataError.single(f"{path} is not a CIFAR-10 batch: {exc}",
                               hint="use the python version of CIFAR-10 (cifar-10-python.tar.gz), unpacked") from None
    if not isinstance(batch, dict):
        raise DataError.single(f"{path} is not a CIFAR-10 batch (no data/labels mapping)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


CLASSES = 10
PIXELS = 3 * 32 * 32
DAMAGED = "the batch is damaged: restore it from the archive"


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeio' else 'a'} {noun}"  # 'a uint8': said 'you-int'


def _arrays(path: Path, batch: dict) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images (N×3×32×32 uint8) and labels (int64, each 0 to 9), or the file's fault."""
    data = batch.get("data")
    # casting would wrap 300 to 44 and NaN to 0 without a word: the pixels must already be bytes
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        got = (_a(f"{data.dtype} array of shape {data.shape}") if isinstance(data, np.ndarray)
               else _a(type(data).__name__))
        raise DataError.single(f"{path} is not a CIFAR-10 batch: its data is {got}, not uint8 rows of "
                               f"{PIXELS} pixels", hint=DAMAGED)
    try:
        images = data.reshape(-1, 3, 32, 32)
        raw = list(batch["labels"])
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise DataError.single(f"{path} is not a CIFAR-10 batch: {type(exc).__name__}: {exc}",
                               hint="use the python version of CIFAR-10 (cifar-10-python.tar.gz), unpacked") from None
    for index, label in enumerate(raw):
        if isinstance(label, bool) or not isinstance(label, int | np.integer) or not 0 <= label < CLASSES:
            raise DataError.single(f"{path}: label {label!r} of image {index} is not a class number "
                                   f"(0 to {CLASSES - 1})", hint=DAMAGED)
    if len(images) != len(raw):
        raise DataError.single(f"{path} has {len(images)} images but {len(raw)} labels", hint=DAMAGED)
    return images, np.asarray(raw, dtype=np.int64)


def load_cifar10(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(train images N×3×32×32 uint8, train labels, test images, test labels, class names)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError.single(f"the CIFAR-10 folder {folder} does not exist",
                               hint="point --data-path (or data.path) at the unpacked cifar-10-batches-py folder, "
                                    "which holds data_batch_1 ... test_batch")
    missing = [name for name in (*TRAIN_FILES, "test_batch", "batches.meta") if not (folder / name).is_file()]
    if missing:
        raise DataError.single(f"{folder} lacks {', '.join(missing)}",
                               hint="unpack cifar-10-python.tar.gz and point --data-path at cifar-10-batches-py")

    def images_and_labels(names):
        images, labels = [], []
        for name in names:
            batch_images, batch_labels = _arrays(folder / name, _load_batch(folder / name))
            images.append(batch_images)
            labels.append(batch_labels)
        return np.concatenate(images), np.concatenate(labels)

    train_x, train_y = images_and_labels(TRAIN_FILES)
    test_x, test_y = images_and_labels(("test_batch",))
    return train_x, train_y, test_x, test_y, _class_names(folder / "batches.meta")


def _class_names(path: Path) -> list[str]:
    """The ten names in batches.meta, or the file's fault."""
    names = _load_batch(path).get("label_names")
    if (not isinstance(names, list) or len(names) != CLASSES
            or not all(isinstance(name, bytes | str) for name in names)):
        got = ("missing" if names is None else f"a list of {len(names)}" if isinstance(names, list)
               else _a(type(names).__name__))
        raise DataError.single(f"{path} is damaged: its label_names is {got}, not a list of {CLASSES} names",
                               hint="restore it from the archive")
    try:
        return [name.decode() if isinstance(name, bytes) else name for name in names]
    except UnicodeDecodeError:
        raise DataError.single(f"{path} is damaged: a label name is not UTF-8 text",
                               hint="restore it from the archive") from None

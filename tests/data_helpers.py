"""Small datasets made by the tests: image folders and CIFAR-10 python batches."""

from __future__ import annotations


def make_folder(root, classes=("cat", "dog"), per_class=3, size=(40, 30)):
    from PIL import Image

    for split in ("train", "val"):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", size, (40 * index + i, 100, 200)).save(folder / f"{i}.png")
    return root


def make_cifar(folder, per_batch=4):
    """A CIFAR-10 folder in the distributed layout, with a few images per batch."""
    import pickle

    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                  "ship", "truck")]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return folder

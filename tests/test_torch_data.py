"""Training data for the torch backend: real digits with no download, image folders, synthetic
images, and clear errors for bad data."""

from __future__ import annotations

import numpy as np
import pytest

from netspec.errors import DataError

torch = pytest.importorskip("torch")

from netspec import check_file  # noqa: E402
from netspec.language.spec import DataSpec  # noqa: E402

from .conftest import SPECS_DIR  # noqa: E402
from .data_helpers import make_cifar, make_folder  # noqa: E402

pytestmark = pytest.mark.torch
TORCHVISION_SPEC = SPECS_DIR / "alexnet-torchvision.yaml"


def small_net(classes: int = 10):
    return check_file(TORCHVISION_SPEC, [f"num_classes={classes}"], input_shape=(3, 64, 64))


def test_digits_ship_with_scikit_learn_and_become_the_spec_input():
    from netspec_torch.data import load_datasets

    data = load_datasets(small_net(), DataSpec(dataset="digits", val_fraction=0.2))
    assert (len(data.train), len(data.val)) == (1438, 359)
    image, label = data.train[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert 0 <= int(label) < 10 and data.classes == [str(d) for d in range(10)]
    # grayscale was copied to three channels, then normalized per channel
    assert not torch.equal(image[0], image[1])  # different means/stds per channel
    assert image.std() > 0.1


def test_resize_and_random_crop_for_training_centre_crop_for_evaluation():
    from netspec_torch.data import transforms

    net = small_net()
    spec = DataSpec(resize=72, random_crop=True, hflip=True, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    image = torch.arange(16 * 16, dtype=torch.int64).reshape(1, 16, 16).to(torch.uint8)
    evaluation = transforms(net, spec, train=False, source_channels=1)
    assert torch.equal(evaluation(image), evaluation(image))  # deterministic
    training = transforms(net, spec, train=True, source_channels=1)
    torch.manual_seed(0)
    crops = {tuple(training(image)[0, 0, :4].tolist()) for _ in range(8)}
    assert len(crops) > 1  # random crops (and flips) differ
    assert training(image).shape == evaluation(image).shape == (3, 64, 64)


def test_synthetic_matches_the_spec(tmp_path):
    from netspec.train.sources import SYNTHETIC_TRAIN
    from netspec_torch.data import load_datasets

    data = load_datasets(small_net(7), DataSpec(dataset="synthetic"))
    assert len(data.train) == SYNTHETIC_TRAIN
    image, label = data.train[3]
    assert image.shape == (3, 64, 64) and 0 <= int(label) < 7


def test_imagefolder(tmp_path):
    from netspec_torch.data import load_datasets

    root = make_folder(tmp_path / "pets")
    data = load_datasets(small_net(2), DataSpec(dataset="imagefolder", path=str(root)))
    assert data.classes == ["cat", "dog"] and (len(data.train), len(data.val)) == (6, 6)
    image, label = data.val[5]
    assert image.shape == (3, 64, 64) and int(label) == 1


def test_imagefolder_without_val_holds_out_val_fraction_of_train(tmp_path):
    """A val/ folder was required; without one, a seeded share of train/ is held out, as for digits."""
    import shutil

    from netspec_torch.data import load_datasets

    root = make_folder(tmp_path / "pets", per_class=5)
    shutil.rmtree(root / "val")
    data = load_datasets(small_net(2), DataSpec(dataset="imagefolder", path=str(root), val_fraction=0.3))
    assert data.classes == ["cat", "dog"] and (len(data.train), len(data.val)) == (7, 3)
    again = load_datasets(small_net(2), DataSpec(dataset="imagefolder", path=str(root), val_fraction=0.3))
    assert [int(again.val[i][1]) for i in range(3)] == [int(data.val[i][1]) for i in range(3)]
    train_images = {data.train[i][0].numpy().tobytes() for i in range(7)}
    assert not any(data.val[i][0].numpy().tobytes() in train_images for i in range(3))  # disjoint


def test_undecodable_image_is_named(tmp_path):
    from netspec_torch.data import load_datasets

    root = make_folder(tmp_path / "pets")
    broken = root / "train" / "cat" / "0.png"
    broken.write_bytes(b"this is not a png")
    data = load_datasets(small_net(2), DataSpec(dataset="imagefolder", path=str(root)))
    with pytest.raises(DataError, match=f"cannot decode image {broken}"):
        data.train[0]


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda root: None, "no 'train' folder in"),
        (lambda root: (root / "train").mkdir(parents=True), "holds no images"),
    ],
    ids=["missing", "empty"],
)
def test_missing_or_empty_folder(tmp_path, prepare, message):
    from netspec_torch.data import load_datasets

    root = tmp_path / "data"
    prepare(root)
    with pytest.raises(DataError, match=message):
        load_datasets(small_net(2), DataSpec(dataset="imagefolder", path=str(root)))


def test_class_count_mismatch_says_how_to_fix_it():
    from netspec_torch.data import load_datasets

    with pytest.raises(DataError) as caught:
        load_datasets(small_net(1000), DataSpec(dataset="digits"))
    [problem] = caught.value.problems
    assert problem.message == "the dataset has 10 classes but the spec's output layer 'fc8' yields 1000 values"
    assert problem.hint.startswith("--set num_classes=10")
    assert problem.layer == "fc8" and problem.location.line > 0


def test_cifar10_python_batches(tmp_path):
    from netspec_torch.data import load_datasets

    folder = make_cifar(tmp_path / "cifar-10-batches-py")
    net = check_file(SPECS_DIR / "alexnet-cifar10.yaml")
    data = load_datasets(net, net.spec.data.model_copy(update={"path": str(folder)}))
    assert (len(data.train), len(data.val)) == (20, 4)
    assert data.classes[3] == "cat"
    image, label = data.train[0]
    assert image.shape == (3, 227, 227) and 0 <= int(label) < 10


def test_cifar10_batch_carrying_code_is_refused(tmp_path):
    import os
    import pickle

    from netspec_torch.data import load_datasets

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    folder = make_cifar(tmp_path / "cifar")
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Payload(), b"labels": []}))
    net = check_file(SPECS_DIR / "alexnet-cifar10.yaml")
    with pytest.raises(DataError, match="refusing to load posix.system from a CIFAR batch"):
        load_datasets(net, net.spec.data.model_copy(update={"path": str(folder)}))


def test_cifar10_missing_files_are_named(tmp_path):
    from netspec_torch.data import load_datasets

    folder = make_cifar(tmp_path / "cifar")
    (folder / "test_batch").unlink()
    net = check_file(SPECS_DIR / "alexnet-cifar10.yaml")
    with pytest.raises(DataError, match="lacks test_batch"):
        load_datasets(net, net.spec.data.model_copy(update={"path": str(folder)}))


PETS = """
    name: pets
    input: [3, 16, 16]
    layers:
      - {name: conv, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1, activation: relu}
      - {type: flatten}
      - {name: fc, type: linear, out_features: 2}
    training: {epochs: 1, batch_size: 2}
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_an_undecodable_image_is_a_clean_error_with_or_without_workers(write_spec, tmp_path, workers):
    """In a DataLoader worker the error used to arrive as torch's re-raised RuntimeError with the
    worker's traceback (exit 1); it must read as in the main process (exit 2)."""
    import subprocess
    import sys

    root = make_folder(tmp_path / "pets")
    broken = root / "train" / "cat" / "1.png"
    broken.write_bytes(b"this is not a png")
    result = subprocess.run([sys.executable, "-m", "netspec", "train", str(write_spec(PETS)), "--data", "imagefolder",
                             "--data-path", str(root), "--workers", str(workers), "--run-dir", str(tmp_path / "run"),
                             "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"error: cannot decode image {broken}" in result.stderr
    assert "hint: remove or replace the file" in result.stderr
    assert "Traceback" not in result.stderr and "worker" not in result.stderr.lower()


@pytest.mark.parametrize("bad", [99, -1, None, "cat", 2.5])
def test_cifar10_labels_out_of_range_are_named(tmp_path, bad):
    import pickle

    from netspec.train.cifar import load_cifar10

    folder = make_cifar(tmp_path / "cifar")
    batch = pickle.loads((folder / "data_batch_2").read_bytes())
    batch[b"labels"][1] = bad
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError) as caught:
        load_cifar10(folder)
    [problem] = caught.value.problems
    assert str(folder / "data_batch_2") in problem.message
    assert f"label {bad!r} of image 1" in problem.message and "0 to 9" in problem.message


@pytest.mark.parametrize(("pixels", "got"), [
    ("float", "a float64 array of shape (4, 3072)"),  # NaN would be cast to 0 and trained on
    ("int64", "an int64 array of shape (4, 3072)"),  # 300 would wrap to 44
    ("short", "a uint8 array of shape (4, 3000)"),
    ("list", "a list"),
])
def test_cifar10_pixels_that_are_not_bytes_are_refused(tmp_path, pixels, got):
    import pickle

    import numpy as np

    from netspec.train.cifar import load_cifar10

    folder = make_cifar(tmp_path / "cifar")
    batch = pickle.loads((folder / "data_batch_3").read_bytes())
    data = batch[b"data"]
    batch[b"data"] = {"float": np.where(data > 128, np.nan, data.astype(np.float64)),
                      "int64": data.astype(np.int64) + 44, "short": data[:, :3000], "list": data.tolist()}[pixels]
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError) as caught:
        load_cifar10(folder)
    [problem] = caught.value.problems
    assert problem.message == (f"{folder / 'data_batch_3'} is not a CIFAR-10 batch: its data is {got}, "
                               "not uint8 rows of 3072 pixels")


@pytest.mark.parametrize(("names", "got"), [
    (5, "an int"), (None, "missing"), ([b"cat"] * 9, "a list of 9"), ([b"cat"] * 9 + [3], "a list of 10"),
])
def test_cifar10_class_names_that_are_not_ten_names_are_refused(tmp_path, names, got):
    import pickle

    from netspec.train.cifar import load_cifar10

    folder = make_cifar(tmp_path / "cifar")
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names} if names is not None else {}))
    with pytest.raises(DataError) as caught:
        load_cifar10(folder)
    [problem] = caught.value.problems
    assert problem.message == (f"{folder / 'batches.meta'} is damaged: its label_names is {got}, "
                               "not a list of 10 names")
    assert load_cifar10(make_cifar(tmp_path / "intact"))[4][:2] == ["airplane", "automobile"]


@pytest.mark.parametrize(("size", "what"), [((40, 30), "warning"), ((100, 100), "error")])
def test_a_decompression_bomb_is_refused_and_named(tmp_path, monkeypatch, size, what):
    """PIL warns above MAX_IMAGE_PIXELS and raises above twice that; both are refused, with the file."""
    from PIL import Image

    from netspec_torch.data import load_datasets

    root = make_folder(tmp_path / "pets")
    bomb = root / "train" / "dog" / "2.png"
    Image.new("RGB", size).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40×30 is above it, 100×100 twice above
    data = load_datasets(small_net(2), DataSpec(dataset="imagefolder", path=str(root)))
    index = data.train.files.paths.index(str(bomb))
    with pytest.raises(DataError) as caught:
        data.train[index]
    [problem] = caught.value.problems
    assert problem.message.startswith(f"refusing to decode image {bomb}: {size[0] * size[1]:,} pixels")
    assert "decompression bomb" in problem.message


@pytest.mark.parametrize("random_crop", [False, True])
def test_images_transformed_once_train_exactly_as_images_transformed_every_epoch(write_spec, tmp_path, monkeypatch,
                                                                              random_crop):
    """A deterministic transform is applied once per image and kept (the validation set always,
    the training set without random crops or flips): the run is the very same."""
    from netspec_torch.data import ArrayImages

    from .test_training import TINY, comparable, train

    spec = write_spec(TINY.replace("random_crop: true", f"random_crop: {str(random_crop).lower()}"))
    prepared = []
    real_prepare = ArrayImages.prepare

    def prepare(self, *args, **kwargs):
        kept = real_prepare(self, *args, **kwargs)
        prepared.append(kept)
        return kept

    monkeypatch.setattr(ArrayImages, "prepare", prepare)
    kept_once = train(spec, tmp_path / "prepared", max_steps=3)
    assert prepared == [not random_crop, True]  # the training set, then the validation set
    monkeypatch.setattr(ArrayImages, "prepare", lambda self, *args, **kwargs: False)
    every_epoch = train(spec, tmp_path / "every-epoch", max_steps=3)
    assert comparable(kept_once) == comparable(every_epoch)


def test_a_dataset_too_large_to_keep_is_transformed_as_it_goes():
    from netspec.train.sources import ImageArrays
    from netspec_torch.data import ArrayImages

    arrays = ImageArrays(np.zeros((4, 1, 8, 8), dtype=np.uint8), np.arange(4))
    images = ArrayImages(arrays, lambda image: image.float().repeat(3, 1, 1), deterministic=True)
    assert not images.prepare(limit_bytes=4 * 3 * 8 * 8 * 4 - 1) and images.prepared is None
    assert images.prepare(limit_bytes=4 * 3 * 8 * 8 * 4) and images.prepared.shape == (4, 3, 8, 8)
    random = ArrayImages(arrays, lambda image: image.float(), deterministic=False)
    assert not random.prepare() and random.prepared is None

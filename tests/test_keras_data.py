"""Training data for the Keras backend (tf.data): the same samples and, within a grey level, the
same images as the torch backend; augmentation that depends only on (seed, epoch, sample); errors."""

from __future__ import annotations

import numpy as np
import pytest

from netspec.errors import DataError

pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from netspec import check_file  # noqa: E402
from netspec.language.spec import DataSpec  # noqa: E402

from .conftest import SPECS_DIR  # noqa: E402
from .data_helpers import make_cifar, make_folder  # noqa: E402

pytestmark = pytest.mark.keras
TORCHVISION_SPEC = SPECS_DIR / "alexnet-torchvision.yaml"


def small_net(classes: int = 10):
    return check_file(TORCHVISION_SPEC, [f"num_classes={classes}"], input_shape=(3, 64, 64))


def first_batch(dataset):
    x, y = next(iter(dataset))
    return x.numpy(), y.numpy()


def test_digits_become_channels_last_inputs_with_one_hot_training_labels():
    from netspec_keras.data import load_data

    data = load_data(small_net(), DataSpec(dataset="digits"))
    assert (len(data.train), len(data.val)) == (1438, 359)
    x, y = first_batch(data.train_batches(list(range(16)), epoch=0, batch_size=8))
    assert x.shape == (8, 64, 64, 3) and x.dtype == np.float32
    assert y.shape == (8, 10) and np.array_equal(y.sum(axis=1), np.ones(8))
    np.testing.assert_array_equal(y.argmax(axis=1), data.train.labels[:8])
    x, y = first_batch(data.val_batches(batch_size=5))
    assert x.shape == (5, 64, 64, 3) and y.tolist() == data.val.labels[:5].tolist()


@pytest.mark.parametrize("spec", [DataSpec(dataset="digits"), DataSpec(dataset="digits", resize=72),
                                  DataSpec(dataset="synthetic", resize=70)], ids=["digits", "resize", "synthetic"])
def test_both_backends_see_the_same_validation_images(spec):
    pytest.importorskip("torch")
    from netspec_keras.data import load_data
    from netspec_torch.data import load_datasets

    net = small_net()
    keras_x, keras_y = first_batch(load_data(net, spec).val_batches(batch_size=6))
    torch_val = load_datasets(net, spec).val
    torch_x = np.stack([torch_val[i][0].numpy() for i in range(6)]).transpose(0, 2, 3, 1)
    assert keras_y.tolist() == [torch_val[i][1] for i in range(6)]
    # torchvision rounds resized uint8 images to whole grey levels; one level is 1/255/std
    assert np.abs(keras_x - torch_x).max() <= 1.0 / 255 / min(spec.std) + 1e-6


def test_random_crops_and_flips_depend_only_on_seed_epoch_and_sample():
    from netspec_keras.data import load_data

    data = load_data(small_net(), DataSpec(dataset="digits", resize=80, random_crop=True, hflip=True))
    whole, _ = first_batch(data.train_batches([5, 6, 7, 8], epoch=3, batch_size=4))
    tail, _ = first_batch(data.train_batches([7, 8], epoch=3, batch_size=2))
    np.testing.assert_array_equal(whole[2:], tail)  # what a resumed epoch sees
    other_epoch, _ = first_batch(data.train_batches([5, 6, 7, 8], epoch=4, batch_size=4))
    assert not np.array_equal(whole, other_epoch)
    centre, _ = first_batch(data.val_batches(batch_size=4))
    assert centre.shape == whole.shape == (4, 64, 64, 3)


def test_imagefolder(tmp_path):
    from netspec_keras.data import load_data

    root = make_folder(tmp_path / "pets")
    data = load_data(small_net(2), DataSpec(dataset="imagefolder", path=str(root)))
    assert data.classes == ["cat", "dog"] and (len(data.train), len(data.val)) == (6, 6)
    x, y = first_batch(data.val_batches(batch_size=6))
    assert x.shape == (6, 64, 64, 3) and y.tolist() == [0, 0, 0, 1, 1, 1]


def test_undecodable_image_is_named(tmp_path):
    from netspec_keras.data import load_data

    root = make_folder(tmp_path / "pets")
    broken = root / "train" / "dog" / "1.png"
    broken.write_bytes(b"this is not a png")
    data = load_data(small_net(2), DataSpec(dataset="imagefolder", path=str(root)))
    with pytest.raises(tf.errors.OpError) as caught:
        first_batch(data.train_batches(list(range(6)), epoch=0, batch_size=6))
    error = data.explain(caught.value)
    assert error.problems[0].message.startswith(f"cannot decode image {broken}")


def test_cifar10_python_batches(tmp_path):
    from netspec_keras.data import load_data

    folder = make_cifar(tmp_path / "cifar-10-batches-py")
    net = check_file(SPECS_DIR / "alexnet-cifar10.yaml")
    data = load_data(net, net.spec.data.model_copy(update={"path": str(folder)}))
    assert (len(data.train), len(data.val)) == (20, 4) and data.classes[3] == "cat"
    x, y = first_batch(data.train_batches(list(range(4)), epoch=0, batch_size=4))
    assert x.shape == (4, 227, 227, 3) and y.shape == (4, 10)


def test_resize_smaller_than_the_input_is_refused():
    from netspec_keras.data import load_data

    with pytest.raises(DataError, match=r"data.resize 48 is smaller than the 64×64 input"):
        load_data(small_net(), DataSpec(dataset="digits", resize=48))


@pytest.mark.parametrize("random_crop", [False, True])
def test_keras_images_transformed_once_train_exactly_as_images_transformed_every_epoch(write_spec, tmp_path,
                                                                                    monkeypatch, random_crop):
    from netspec_keras.data import KerasData

    from .test_training import TINY, comparable, train

    spec = write_spec(TINY.replace("random_crop: true", f"random_crop: {str(random_crop).lower()}"))
    kept_once = train(spec, tmp_path / "prepared", backend="keras", max_steps=3)
    monkeypatch.setattr(KerasData, "_prepared", lambda self, split: None)
    every_epoch = train(spec, tmp_path / "every-epoch", backend="keras", max_steps=3)
    assert comparable(kept_once) == comparable(every_epoch)


def test_keras_keeps_only_deterministic_in_memory_splits(write_spec):
    from netspec_keras.data import load_data

    from .test_training import TINY

    for random_crop in (False, True):
        net = check_file(write_spec(TINY.replace("random_crop: true", f"random_crop: {str(random_crop).lower()}")))
        data = load_data(net, net.spec.data)
        val = data._prepared("val")
        assert tuple(val.shape) == (len(data.val), 16, 16, 3)
        assert (data._prepared("train") is None) is random_crop

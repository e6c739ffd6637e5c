"""The AlexNet family in specs/ reproduces each write-up exactly (DESIGN.md section 2)."""

from __future__ import annotations

import pytest

from netspec import check_file
from netspec.errors import SpecError

from .conftest import ALL_SPECS, SPECS_DIR

# spec -> (total params, output sizes of the conv and pool layers in order)
EXPECTED = {
    "alexnet.yaml": (60_965_224, [55, 27, 27, 13, 13, 13, 13, 6]),
    "alexnet-torchvision.yaml": (61_100_840, [55, 27, 27, 13, 13, 13, 13, 6]),
    "alexnet-keras.yaml": (62_378_344, [56, 27, 27, 13, 13, 13, 13, 6]),
    "alexnet-onetower.yaml": (62_378_344, [54, 26, 28, 13, 13, 13, 13, 6]),
    "alexnet-cifar10.yaml": (58_322_314, [55, 27, 27, 13, 13, 13, 13, 6]),
    "alexnet-digits.yaml": (57_044_810, [15, 7, 7, 3, 3, 3, 3, 1]),
}


def test_every_spec_has_expectations():
    assert sorted(p.name for p in ALL_SPECS) == sorted(EXPECTED)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda p: p.name)
def test_spec_totals_and_spatial_sizes(spec):
    net = check_file(spec)
    params, sizes = EXPECTED[spec.name]
    assert net.totals.params == params
    assert net.totals.trainable_params == params
    assert [cl.output_shape[1] for cl in net.layers if cl.type in ("conv2d", "maxpool2d")] == sizes
    assert net.totals.params == sum(cl.params + cl.non_trainable for cl in net.layers)


def test_torchvision_macs_match_the_published_0_714_gmac():
    assert check_file(SPECS_DIR / "alexnet-torchvision.yaml").totals.macs == 714_188_480


def test_paper_spec_groups_and_lrn():
    net = check_file(SPECS_DIR / "alexnet.yaml")
    groups = {cl.name: cl.layer.groups for cl in net.layers if cl.type == "conv2d"}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    assert [cl.name for cl in net.layers if cl.type == "lrn"] == ["lrn1", "lrn2"]
    # grouped convs: each filter sees in_channels / groups channels
    assert net.layer("conv2").params == 256 * 48 * 5 * 5 + 256
    assert net.layer("conv2").macs == 27 * 27 * 256 * 48 * 25


def test_onetower_extends_the_paper_spec():
    net = check_file(SPECS_DIR / "alexnet-onetower.yaml")
    assert net.source.loaded.chain[1].endswith("alexnet.yaml")
    assert "lrn" not in {cl.type for cl in net.layers}
    assert net.layer("conv1").output_shape == (96, 54, 54)
    assert net.layer("conv2").output_shape == (256, 28, 28)


def test_keras_spec_is_channels_last_with_softmax():
    net = check_file(SPECS_DIR / "alexnet-keras.yaml")
    assert net.spec.input.layout == "channels_last"
    assert net.input_shape == (3, 224, 224)
    assert net.layer("conv1").output_shape == (96, 56, 56)
    assert net.layers[-1].layer.activation == "softmax"


def test_cifar10_recipe():
    spec = check_file(SPECS_DIR / "alexnet-cifar10.yaml").spec
    assert spec.input.shape == (3, 227, 227)
    t = spec.training
    assert (t.epochs, t.batch_size) == (90, 128)
    opt = t.optimizer
    assert (opt.name, opt.lr, opt.momentum, opt.weight_decay) == ("sgd", 0.01, 0.9, 5e-4)
    assert (t.schedule.name, t.schedule.factor) == ("plateau", 0.1)
    assert (spec.data.dataset, spec.data.resize, spec.data.random_crop) == ("cifar10", 256, True)


def test_cifar10_network_at_224_explains_the_227_discrepancy():
    with pytest.raises(SpecError) as caught:
        check_file(SPECS_DIR / "alexnet-cifar10.yaml", input_shape=(3, 224, 224))
    [problem] = caught.value.problems
    assert problem.layer == "fc6"
    assert "in_features is 9,216" in problem.message and "256×5×5" in problem.message
    assert "6,400 features" in problem.message
    assert "3×227×227" in problem.hint and "256×6×6 = 9,216" in problem.hint
    line = (SPECS_DIR / "alexnet-cifar10.yaml").read_text().splitlines()[problem.location.line - 1]
    assert line[problem.location.column - 1:].startswith("in_features: 9216")


def test_set_overrides_a_param():
    net = check_file(SPECS_DIR / "alexnet.yaml", ["num_classes=10"])
    assert net.output_shape == (10,)
    assert net.totals.params == 60_965_224 - 4096 * 990 - 990


def test_batch_scales_the_memory_estimate_but_not_params():
    one = check_file(SPECS_DIR / "alexnet.yaml").totals
    many = check_file(SPECS_DIR / "alexnet.yaml", batch=32).totals
    assert many.params == one.params
    assert many.input_bytes == 32 * one.input_bytes == 32 * 3 * 224 * 224 * 4
    assert many.activation_bytes == 32 * one.activation_bytes
    assert many.total_bytes == many.input_bytes + many.activation_bytes + many.param_bytes


def test_receptive_field_of_the_paper_network():
    net = check_file(SPECS_DIR / "alexnet.yaml")
    rf = {cl.name: cl.receptive_field for cl in net.layers}
    assert rf["conv1"] == (11, 11)
    assert rf["pool1"] == (19, 19)  # 11 + (3 - 1) * 4
    assert rf["conv2"] == (51, 51)  # 19 + (5 - 1) * 8
    assert rf["pool5"] == (195, 195)
    assert rf["fc6"] is None  # sees the whole image

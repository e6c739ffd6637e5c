"""Networks that classify every pixel: the digit_masks dataset, the checks that pair a network's
output with its dataset's labels, and `netspec train` of the U-Net example in both backends, whose
pixel accuracy is the share of pixels right."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from netspec import check_file
from netspec.cli import app
from netspec.language.spec import DataSpec
from netspec.train.sources import DIGIT_INK, digit_masks, digits, label_positions, load_sources

from .conftest import SPECS_DIR

UNET = SPECS_DIR / "examples" / "unet-digits.yaml"
QUICK = ["--epochs", "1", "--max-steps", "3", "--batch-size", "8", "--device", "cpu"]


def test_digit_masks_label_each_pixel_with_what_it_shows():
    load_digits = pytest.importorskip("sklearn.datasets").load_digits  # comes with the torch and keras extras

    net = check_file(UNET)
    masks, plain = digit_masks(net, DataSpec(dataset="digit_masks"), 0), digits(net, DataSpec(), 0)
    assert masks.classes == ["background", *(f"digit {d}" for d in range(10))]
    images, labels = masks.train.images, masks.train.labels
    assert images.shape[1:] == (1, 32, 32) and labels.shape[1:] == (32, 32) and labels.dtype == np.int64
    # the same split as digits, each pixel repeated 4×4
    assert np.array_equal(images[:, :, ::4, ::4], plain.train.images)
    assert np.array_equal(images, np.repeat(np.repeat(plain.train.images, 4, axis=2), 4, axis=3))
    # background where the ink is faint, else the digit's class (1 + d), found from the raw digits
    bunch = load_digits()
    first = next(i for i in range(len(bunch.target)) if np.array_equal(
        np.round(bunch.images[i] * (255.0 / 16.0)).astype(np.uint8), plain.train.images[0, 0]))
    expected = np.where(bunch.images[first] >= DIGIT_INK, bunch.target[first] + 1, 0)
    assert np.array_equal(labels[0, ::4, ::4], expected)
    assert set(np.unique(labels[0])) == {0, bunch.target[first] + 1}
    assert 0.5 < (masks.val.labels == 0).mean() < 0.65  # the background's share: the accuracy to beat


def test_a_pixel_network_and_its_dataset_must_agree(write_spec):
    unet = check_file(UNET)
    assert label_positions(unet) == 32 * 32
    assert label_positions(check_file(SPECS_DIR / "alexnet-digits.yaml")) == 1
    with pytest.raises(Exception) as wrong_dataset:
        load_sources(unet, DataSpec(dataset="digits", mean=(0.5,), std=(0.5,)))
    assert "one label per image" in str(wrong_dataset.value) and "digit_masks" in str(wrong_dataset.value)
    with pytest.raises(Exception) as moved:
        load_sources(unet, DataSpec(dataset="digit_masks", hflip=True, mean=(0.5,), std=(0.5,)))
    assert "data.hflip would move the pixels but not their labels" in str(moved.value)
    assert moved.value.problems[0].hint == "set data.hflip: false"
    classifier = check_file(SPECS_DIR / "alexnet-digits.yaml", ["num_classes=11"])
    with pytest.raises(Exception) as not_dense:
        load_sources(classifier, DataSpec(dataset="digit_masks", mean=(0.5,) * 3, std=(0.5,) * 3))
    assert "labels every pixel" in str(not_dense.value) and "1×1 conv2d" in str(not_dense.value)


@pytest.mark.torch
def test_a_classifier_given_digit_masks_is_one_located_error(tmp_path):
    result = CliRunner().invoke(app, ["train", str(SPECS_DIR / "alexnet-digits.yaml"), "--data", "digit_masks",
                                      "--set", "num_classes=11", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "labels every pixel" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("torch", marks=pytest.mark.torch),
                                     pytest.param("keras", marks=pytest.mark.keras)])
def test_the_unet_trains_and_its_accuracy_is_a_share_of_pixels(backend, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(UNET), "--backend", backend, "--run-dir", str(run), *QUICK])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # a share of the pixels (a count per image would pass 1 at once)
    assert 0.0 <= record["train_top1"] <= 1.0 and 0.0 <= record["val_top1"] <= 1.0
    assert record["val_top1"] <= record["val_top5"] <= 1.0
    assert np.isfinite(record["train_loss"]) and np.isfinite(record["val_loss"])


@pytest.mark.torch
@pytest.mark.slow
def test_the_reported_pixel_accuracy_is_what_the_saved_model_scores(tmp_path):
    """The validation top-1 of a run, recomputed from its checkpoint: the share of validation pixels
    whose highest score is their label."""
    import torch

    import netspec
    from netspec_torch.data import load_datasets

    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(UNET), "--run-dir", str(run), *QUICK])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    manifest = json.loads((run / "checkpoints" / "manifest.json").read_text())
    weights = run / "checkpoints" / manifest["last"]["folder"] / "weights.safetensors"
    model = netspec.build(UNET, weights=weights).eval()
    net = check_file(UNET)
    val = load_datasets(net, net.spec.data).val
    images = torch.stack([val[i][0] for i in range(len(val))])
    labels = torch.from_numpy(val.labels)
    with torch.no_grad():
        right = (model(images).argmax(1) == labels).double().mean().item()
    assert record["val_top1"] == pytest.approx(right, abs=1e-9)
    assert right != pytest.approx((labels == 0).double().mean().item(), abs=1e-3)  # not all background


@pytest.mark.torch
@pytest.mark.slow
def test_bench_gives_the_reference_loop_a_label_per_pixel(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", str(UNET), "--batch-sizes", "4", "--steps", "2", "--warmup", "1",
                                      "--trials", "1", "--loops", "netspec,eager-fp32", "-o", str(out),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [row["loop"] for row in rows] == ["netspec", "eager-fp32"] and all(r["images_per_s"] > 0 for r in rows)

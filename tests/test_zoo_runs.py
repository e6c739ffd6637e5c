"""Every zoo spec written out in full trains through the CLI, and one of each kind of graph benchmarks (the
variants that extend them change depths and widths only): a tiny input (32×32, or the smallest a
network takes: Inception-v3's 75×75), synthetic images, batches of 4 (batch norm over 2 images of 1×1 features is
degenerate) and two steps, so the whole zoo runs in CI."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from netspec.cli import app

from .conftest import ZOO_BASES, ZOO_SPECS, small_input


def tiny(spec) -> list[str]:
    _, height, width = small_input(spec, 32)
    return ["--input", f"3x{height}x{width}", "--set", "num_classes=10", "--device", "cpu"]

KERAS_ZOO = ["resnet18", "mobilenet_v2", "squeezenet1_1",  # merges, depthwise convolutions, concatenation
             "vit_b_16"]  # tokens, attention and learned tensors
# bench times the same training step train runs; one network of each kind of graph is enough for it
BENCHED_ZOO = {"resnet18", "densenet121", "efficientnet_b0", "vit_b_16"}


def train_two_steps(spec, run_dir, backend: str) -> dict:
    result = CliRunner().invoke(app, ["train", str(spec), "--backend", backend, "--data", "synthetic", "--epochs", "1",
                                      "--batch-size", "4", "--max-steps", "2", "--run-dir", str(run_dir), *tiny(spec)])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 2 and math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"])
    manifest = json.loads((run_dir / "checkpoints" / "manifest.json").read_text())
    assert manifest["last"]["folder"]
    return record


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("spec", ZOO_BASES, ids=lambda p: p.stem)
def test_every_zoo_spec_trains_in_torch_and_some_benchmark(spec, tmp_path):
    train_two_steps(spec, tmp_path / "run", "torch")
    if spec.stem not in BENCHED_ZOO:
        return
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", str(spec), "--batch-sizes", "4", "--steps", "2", "--warmup", "1",
                                      "--trials", "1", "--loops", "netspec", "-o", str(out), *tiny(spec)])
    assert result.exit_code == 0, result.output
    [row] = json.loads(out.read_text())["rows"]
    assert row["loop"] == "netspec" and row["images_per_s"] > 0


@pytest.mark.keras
@pytest.mark.slow
@pytest.mark.parametrize("name", KERAS_ZOO)
def test_zoo_specs_train_in_keras(name, tmp_path):
    """The graphs the Keras backend builds differently from a chain (residual additions, depthwise
    convolutions, concatenation) train there too; every zoo spec's Keras forward pass is checked
    against torch in test_keras_backend."""
    pytest.importorskip("keras")
    train_two_steps(next(p for p in ZOO_SPECS if p.stem == name), tmp_path / "run", "keras")

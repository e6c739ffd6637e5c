"""`netspec bench` on the CPU with a tiny spec: every loop and batch size measured, JSON as documented."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from netspec.cli import app

TINY = """
    name: tiny
    input: [3, 16, 16]
    layers:
      - {name: conv1, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1, activation: relu}
      - {name: pool1, type: maxpool2d, kernel_size: 2}
      - {type: flatten}
      - {name: fc, type: linear, out_features: 10}
    data: {dataset: digits, resize: 18, random_crop: true, hflip: true}
"""


@pytest.mark.torch
@pytest.mark.slow
def test_torch_bench_measures_every_loop_and_batch_size(write_spec, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", str(write_spec(TINY)), "--batch-sizes", "8,16", "--steps", "3",
                                      "--warmup", "1", "--trials", "2", "--device", "cpu", "-o", str(out)],
                                env={"COLUMNS": "200"})  # the table's rows whole, whatever the caller's COLUMNS
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["spec"] == "tiny" and doc["macs_per_image"] == 8 * 27 * 256 + 8 * 64 * 10
    assert doc["versions"]["torch"] and doc["device"].startswith("CPU") and "threads)" in doc["device"]
    assert [(r["loop"], r["batch_size"]) for r in doc["rows"]] == [
        (loop, batch) for batch in (8, 16) for loop in ("netspec", "eager-fp32", "compiled-bf16")]
    for row in doc["rows"]:
        assert row["images_per_s"] > 0 and row["ms_per_step"] > 0 and row["warmup_s"] > 0
        assert row["mfu"] is None and row["peak_memory_gib"] is None  # GPU-only figures
    from netspec.train.hardware import cpu_has_native_bf16

    # on the CPU: a fused optimizer, and bf16 where the CPU has it, with the reason in the note
    native = cpu_has_native_bf16()
    assert doc["rows"][0]["note"] == ("fast path: bf16, fused_optimizer (bf16: the CPU has bfloat16)" if native
                                      else "fast path: fused_optimizer (no bf16: the CPU has no native bfloat16)")
    assert [(r["batch_size"], r["best_reference"]) for r in doc["ratios"]] == [
        (8, max(doc["rows"][1:3], key=lambda r: r["images_per_s"])["loop"]),
        (16, max(doc["rows"][4:6], key=lambda r: r["images_per_s"])["loop"])]
    netspec_8 = doc["rows"][0]["images_per_s"]
    assert doc["ratios"][0]["netspec_over_best_reference"] == pytest.approx(
        netspec_8 / max(r["images_per_s"] for r in doc["rows"][1:3]))
    assert "images/s" in result.output and "netspec / fastest reference:" in result.output


@pytest.mark.keras
def test_keras_bench_measures_its_trainer_against_fit_and_compiled_loops(write_spec, tmp_path):
    pytest.importorskip("keras")
    spec = str(write_spec(TINY))
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", spec, "--backend", "keras", "--batch-sizes", "8", "--steps", "2",
                                      "--warmup", "1", "--trials", "2", "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert [row["loop"] for row in doc["rows"]] == ["netspec", "keras-fit", "keras-compiled", "keras-xla"]
    assert all(row["images_per_s"] > 0 and row["warmup_s"] > 0 for row in doc["rows"])
    from netspec.train.hardware import cpu_has_native_bf16

    precision = "mixed bf16" if cpu_has_native_bf16() else "fp32"
    assert doc["rows"][0]["note"] == f"keras on tensorflow, {precision}"
    assert doc["rows"][1]["note"].startswith("fp32, model.fit")  # the plain loop
    assert doc["rows"][3]["note"] == f"{precision}, train_on_batch on a batch in memory, XLA"
    best = max(doc["rows"][1:], key=lambda r: r["images_per_s"])
    assert doc["ratios"] == [{"batch_size": 8, "best_reference": best["loop"], "netspec_over_best_reference":
                              pytest.approx(doc["rows"][0]["images_per_s"] / best["images_per_s"])}]
    assert doc["versions"]["keras"] and doc["versions"]["tensorflow"]
    refused = CliRunner().invoke(app, ["bench", spec, "--backend", "keras", "--loops", "netspec,eager-fp32"])
    assert refused.exit_code == 2
    assert "unknown loop(s) for --backend keras: eager-fp32" in " ".join(refused.output.split())


@pytest.mark.parametrize(("args", "message"), [
    (["--batch-sizes", "8,x"], "is not a list of positive numbers"),
    (["--loops", "netspec,fastest"], "unknown loop(s) for --backend torch: fastest"),
])
def test_bench_option_mistakes(write_spec, args, message):
    result = CliRunner().invoke(app, ["bench", str(write_spec(TINY)), *args])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.torch
@pytest.mark.slow
def test_compiled_loop_on_the_cpu_prints_no_cuda_warning(write_spec, tmp_path):
    """torch.compile on the CPU imports torch.utils.cpp_extension, which warned 'No CUDA runtime is
    found, using CUDA_HOME=...' on every CPU bench."""
    import subprocess
    import sys

    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, "-m", "netspec", "bench", str(write_spec(TINY)), "--loops",
                             "compiled-bf16", "--batch-sizes", "2", "--steps", "1", "--warmup", "1", "--trials", "1",
                             "--device", "cpu"], capture_output=True, text=True, timeout=600,
                            env={k: v for k, v in os.environ.items() if k != "COLUMNS"})  # rows unwrapped
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CUDA_HOME" not in result.stderr and "No CUDA runtime" not in result.stderr, result.stderr
    assert "compiled-bf16" in result.stdout


@pytest.mark.torch
def test_a_loop_whose_loss_breaks_is_reported_in_its_row_and_the_others_still_measured(write_spec, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", str(write_spec(TINY)), "--batch-sizes", "8", "--steps", "3",
                                      "--warmup", "2", "--trials", "1", "--device", "cpu", "--loops",
                                      "netspec,eager-fp32", "--set", "training.optimizer.lr=1e38", "-o", str(out)])
    assert result.exit_code == 0, result.output
    ours, eager = json.loads(out.read_text())["rows"]
    assert ours["images_per_s"] == 0 and ours["note"].startswith("the loss became nan")
    assert eager["loop"] == "eager-fp32" and eager["images_per_s"] > 0  # a plain loop does not look at its loss

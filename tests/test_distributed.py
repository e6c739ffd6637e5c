"""Data-parallel training under torchrun on the CPU (gloo): two processes reproduce one process's
run, only rank 0 writes, and a data-parallel run resumes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .test_training import checkpoint_layout

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.torch, pytest.mark.slow]

# no dropout and no random crops: two half batches then give the same gradient as one whole batch
DETERMINISTIC = """
    name: det
    input: [3, 16, 16]
    layers:
      - {name: conv1, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1, activation: relu}
      - {name: pool1, type: maxpool2d, kernel_size: 2}
      - {type: flatten}
      - {name: fc, type: linear, out_features: 10}
    data: {dataset: digits}
    training:
      epochs: 2
      batch_size: 64
      optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
"""


def netspec(*args, processes: int = 1):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
                if processes > 1 else [sys.executable])
    result = subprocess.run([*launcher, "-m", "netspec", *map(str, args)], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def metrics(run):
    return [{k: v for k, v in json.loads(line).items() if k not in ("images_per_s", "seconds")}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_reproduce_one_and_resume(write_spec, tmp_path):
    spec = write_spec(DETERMINISTIC)
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    # in fp32: bfloat16 (the CPU default where the CPU has it) rounds a half batch differently
    netspec("train", spec, "--max-steps", 5, "--run-dir", single, "--no-bf16")
    netspec("train", spec, "--epochs", 1, "--max-steps", 5, "--run-dir", parallel, "--no-bf16", processes=2)
    netspec("train", "--resume", parallel, "--epochs", 2, processes=2)  # --max-steps 5 is the run's own

    one, two = metrics(single), metrics(parallel)
    assert [r["epoch"] for r in two] == [1, 2]  # rank 0 alone wrote the metrics
    assert [r["step"] for r in two] == [5, 10]
    for a, b in zip(one, two, strict=True):
        assert b == pytest.approx(a, rel=1e-5)
    assert checkpoint_layout(parallel)["last"] == ["state.pt", "weights.safetensors"]
    info = json.loads((parallel / "run.json").read_text())
    assert info["overrides"] == ["training.epochs=1"] and info["resumes"][-1]["epochs"] == 2
    assert info["max_steps"] == 5


def test_shards_split_every_global_batch_evenly():
    from netspec_torch.distributed import World

    order = list(range(100, 110))  # batches of 4: the last, partial one is dropped (steps are floored)
    assert [World(rank, 2).shard(order, 4) for rank in range(2)] == [([100, 101, 104, 105, 108, 109], 2),
                                                                     ([102, 103, 106, 107], 2)]
    assert World().shard(order, 4) == (order, 4)


def test_torchrun_needs_a_run_dir_and_the_torch_backend(write_spec, monkeypatch):
    from typer.testing import CliRunner

    from netspec.cli import app

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    result = CliRunner().invoke(app, ["train", str(write_spec(DETERMINISTIC))])
    assert result.exit_code == 2
    assert "a data-parallel run (torchrun) needs --backend torch and --run-dir DIR" in result.output


def test_a_batch_that_does_not_split_evenly_is_refused():
    from netspec.errors import SpecError
    from netspec_torch.distributed import World, check_batch

    with pytest.raises(SpecError, match="the batch size 63 does not split evenly over 2 processes"):
        check_batch(World(0, 2), 63)

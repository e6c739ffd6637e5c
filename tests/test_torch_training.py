"""`netspec train` with the torch backend on the CPU: learning, files, exact resume, NaN, locks."""

from __future__ import annotations

import json
import os
import signal

import pytest

torch = pytest.importorskip("torch")

from netspec import check_file  # noqa: E402
from netspec.backend import get_backend  # noqa: E402
from netspec.errors import SpecError  # noqa: E402
from netspec.train import TrainingStopped, TrainOptions  # noqa: E402
from netspec.train.rundir import RunDir  # noqa: E402

pytestmark = pytest.mark.torch

TINY = """
    name: tiny
    input: [3, 16, 16]
    layers:
      - {name: conv1, type: conv2d, out_channels: 16, kernel_size: 3, padding: 1, activation: relu}
      - {name: pool1, type: maxpool2d, kernel_size: 2}
      - {name: conv2, type: conv2d, out_channels: 32, kernel_size: 3, padding: 1, activation: relu}
      - {name: pool2, type: maxpool2d, kernel_size: 2}
      - {type: flatten}
      - {name: drop, type: dropout, p: 0.2}
      - {name: fc, type: linear, out_features: 10}
    data: {dataset: digits, resize: 18, random_crop: true}
    training:
      epochs: 3
      batch_size: 64
      optimizer: {name: adam, lr: 0.003}
      schedule: {name: step, step_size: 2, factor: 0.5}
"""
TIMING_KEYS = {"images_per_s", "seconds"}


def train(spec, run_dir, *, resume=False, max_steps=None):
    net = check_file(spec)
    run = RunDir(run_dir, resume=resume)
    try:
        if not resume:
            run.write_run_info({"spec_file": str(spec), "overrides": [], "backend": "torch"})
        options = TrainOptions(resume=resume, device="cpu", max_steps_per_epoch=max_steps, progress=False)
        return get_backend("torch").train(net, options, run)
    finally:
        run.close()


def comparable(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def test_tiny_net_learns_digits_and_writes_the_documented_files(write_spec, tmp_path):
    records = train(write_spec(TINY), tmp_path / "run")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["val_top1"] > 0.5  # chance is 0.1
    assert records[-1]["lr"] == pytest.approx(0.0015)  # halved after two epochs
    assert set(records[0]) == {"epoch", "step", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                               "lr", "images_per_s", "seconds"}
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "best.safetensors", "best.state.pt", "last.safetensors", "last.state.pt"]
    model = get_backend("torch").load(check_file(write_spec(TINY)),
                                      weights=tmp_path / "run" / "checkpoints" / "best.safetensors")
    assert sum(p.numel() for p in model.parameters()) == check_file(write_spec(TINY)).totals.params


def test_resume_after_an_interruption_reproduces_the_uninterrupted_run(write_spec, tmp_path, monkeypatch):
    spec = write_spec(TINY)
    uninterrupted = train(spec, tmp_path / "a")

    calls = {"n": 0}
    real_step = torch.optim.Adam.step

    def interrupting_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 30:  # in the middle of epoch 2 (23 steps per epoch): as if Ctrl-C were pressed
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupting_step)
    with pytest.raises(TrainingStopped, match="interrupted at epoch 2, step 7"):
        train(spec, tmp_path / "b")
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    resumed = train(spec, tmp_path / "b", resume=True)
    assert comparable(resumed) == comparable(uninterrupted)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(write_spec, tmp_path, monkeypatch):
    import torch.nn.functional as F

    spec = write_spec(TINY)
    real = F.cross_entropy
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss = real(*args, **kwargs)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 30:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(F, "cross_entropy", poisoned)
    with pytest.raises(SpecError, match=r"the loss became nan at epoch 2, step 7"):
        train(spec, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.state.pt", weights_only=True)
    assert state["loop"]["epoch"] == 1 and state["loop"]["batches_done"] == 0
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    first = RunDir(tmp_path / "run", resume=False)
    (tmp_path / "run" / "run.json").write_text("{}")
    try:
        with pytest.raises(SpecError, match="another run is writing to"):
            RunDir(tmp_path / "run", resume=True)
        with pytest.raises(SpecError, match="already holds a run"):
            RunDir(tmp_path / "run", resume=False)
    finally:
        first.close()


def test_cli_train_and_resume(write_spec, tmp_path):
    from typer.testing import CliRunner

    from netspec.cli import app

    runner = CliRunner()
    spec = write_spec(TINY)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(spec), "--epochs", "1", "--max-steps", "3", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert "done: best val top-1" in result.output
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((run / "run.json").read_text())
    assert info["overrides"] == ["training.epochs=1"] and info["backend"] == "torch"
    again = runner.invoke(app, ["train", "--resume", str(run)])
    assert again.exit_code == 0, again.output  # already finished: nothing more to do
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_cli_train_with_bad_data_leaves_nothing_behind(write_spec, tmp_path):
    from typer.testing import CliRunner

    from netspec.cli import app

    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(write_spec(TINY)), "--data", "imagefolder",
                                      "--data-path", str(tmp_path / "nowhere"), "--run-dir", str(run)])
    assert result.exit_code == 2
    assert "no 'train' folder in" in result.output
    assert not run.exists()


def test_resume_of_a_folder_that_holds_no_run(tmp_path):
    from typer.testing import CliRunner

    from netspec.cli import app

    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert f"nothing to resume in {tmp_path / 'empty'}: it has no run.json" in result.output

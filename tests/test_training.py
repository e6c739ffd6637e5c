"""`netspec train` on the CPU with both backends: learning, the documented files, exact resume,
NaN, locks, the CLI, and checkpoints that either backend can export."""

from __future__ import annotations

import importlib
import json
import os
import signal

import numpy as np
import pytest

from netspec import check_file
from netspec.codegen.backend import get_backend
from netspec.errors import RunError
from netspec.train import TrainingStopped, TrainOptions
from netspec.train.rundir import RunDir

from .conftest import ROOT

BACKENDS = [pytest.param("torch", marks=pytest.mark.torch), pytest.param("keras", marks=pytest.mark.keras)]
STATE_FILE = {"torch": "state.pt", "keras": "state.safetensors"}

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


def train(spec, run_dir, *, backend="torch", resume=False, max_steps=None):
    """A run as `netspec train` makes it (on resume, the run's own spec and options apply)."""
    from netspec.train.launch import RunRequest, train_run

    request = RunRequest(spec=spec, backend=backend, run_dir=run_dir, max_steps=max_steps,
                         options=TrainOptions(device="cpu", progress=False))
    if resume:
        request = RunRequest(resume=run_dir, options=request.options)
    return train_run(request).records


def checkpoint_layout(run) -> dict[str, list[str]]:
    """checkpoints/: its files, and the files of each checkpoint folder (by the manifest's tags)."""
    folder = run / "checkpoints"
    manifest = json.loads((folder / "manifest.json").read_text())
    layout = {"files": sorted(p.name for p in folder.iterdir() if p.is_file())}
    for tag in ("last", "best"):
        layout[tag] = sorted(p.name for p in (folder / manifest[tag]["folder"]).iterdir())
    layout["folders"] = sorted(p.name for p in folder.iterdir() if p.is_dir())
    return layout


def comparable(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def trainer_class(backend):
    module = importlib.import_module(f"netspec_{backend}.trainer")
    return module.TorchTrainer if backend == "torch" else module.KerasTrainer


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_net_learns_digits_and_writes_the_documented_files(write_spec, tmp_path, backend):
    records = train(write_spec(TINY), tmp_path / "run", backend=backend)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["val_top1"] > 0.5  # chance is 0.1
    assert [r["lr"] for r in records] == pytest.approx([0.003, 0.003, 0.0015])  # halved after two epochs
    assert set(records[0]) == {"epoch", "step", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                               "lr", "images_per_s", "seconds"}
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
    layout = checkpoint_layout(tmp_path / "run")
    assert layout["files"] == ["best.safetensors", "last.safetensors", "manifest.json"]
    assert layout["last"] == sorted([STATE_FILE[backend], "weights.safetensors"])
    assert "weights.safetensors" in layout["best"] and len(layout["folders"]) in (1, 2)
    assert sorted((tmp_path / "run").iterdir()) == sorted(
        tmp_path / "run" / name for name in ("checkpoints", "metrics.jsonl", "run.json", "spec.yaml"))  # no .lock


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_after_an_interruption_reproduces_the_uninterrupted_run(write_spec, tmp_path, monkeypatch, backend):
    spec = write_spec(TINY)
    uninterrupted = train(spec, tmp_path / "a", backend=backend)

    cls = trainer_class(backend)
    real_step, calls = cls.train_step, {"n": 0}

    def interrupting_step(self, batch):
        calls["n"] += 1
        if calls["n"] == 30:  # in the middle of epoch 2 (23 steps per epoch): as if Ctrl-C were pressed
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, batch)

    monkeypatch.setattr(cls, "train_step", interrupting_step)
    with pytest.raises(TrainingStopped, match="interrupted at epoch 2, step 7"):
        train(spec, tmp_path / "b", backend=backend)
    monkeypatch.setattr(cls, "train_step", real_step)
    resumed = train(spec, tmp_path / "b", backend=backend, resume=True)
    assert comparable(resumed) == comparable(uninterrupted)


def test_sigterm_also_stops_at_a_step_boundary_with_a_checkpoint(write_spec, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    cls = trainer_class("torch")
    real_step, calls = cls.train_step, {"n": 0}

    def terminated_step(self, batch):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, batch)

    monkeypatch.setattr(cls, "train_step", terminated_step)
    with pytest.raises(TrainingStopped, match="SIGTERM at epoch 1, step 5"):
        train(write_spec(TINY), tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back


def poison_torch_loss(monkeypatch, at_call):
    import torch
    import torch.nn.functional as F

    real, calls = F.cross_entropy, {"n": 0}

    def poisoned(*args, **kwargs):
        loss = real(*args, **kwargs)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == at_call:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(F, "cross_entropy", poisoned)


def poison_keras_loss(monkeypatch, at_call):
    import keras

    real, calls = keras.Model.train_on_batch, {"n": 0}

    def poisoned(self, *args, **kwargs):
        logs = real(self, *args, **kwargs)
        calls["n"] += 1
        return {**logs, "loss": float("nan")} if calls["n"] == at_call else logs

    monkeypatch.setattr(keras.Model, "train_on_batch", poisoned)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(write_spec, tmp_path, monkeypatch, backend):
    spec = write_spec(TINY)
    (poison_torch_loss if backend == "torch" else poison_keras_loss)(monkeypatch, at_call=30)
    with pytest.raises(RunError, match=r"the loss became nan at epoch 2, step 7; the last good checkpoint in "
                                        r".*checkpoints is kept"):
        train(spec, tmp_path / "run", backend=backend)
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    # the checkpoint on disk is the one from the end of epoch 1
    trainer = trainer_class(backend)(get_backend(backend), check_file(spec), TrainOptions(device="cpu"),
                                     RunDir(tmp_path / "run", resume=True))
    try:
        state = trainer.load_checkpoint(trainer.run.checkpoints.files("last"))
    finally:
        trainer.run.close()
    assert state["epoch"] == 1 and state["batches_done"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_non_finite_loss_before_any_checkpoint_promises_none(write_spec, tmp_path, monkeypatch, backend):
    (poison_torch_loss if backend == "torch" else poison_keras_loss)(monkeypatch, at_call=2)
    with pytest.raises(RunError) as caught:
        train(write_spec(TINY), tmp_path / "run", backend=backend)
    assert caught.value.problems[0].message == ("the loss became nan at epoch 1, step 2; no checkpoint had been "
                                                "saved, so there is nothing to resume from")


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_broken_by_the_last_update_are_not_saved(write_spec, tmp_path, backend):
    """A learning rate of 1e38: the one step's loss is finite, the update it makes is not. The
    epoch's validation says so, and nothing is written over the user's run (a run with no good
    checkpoint leaves no folder behind)."""
    from netspec.train.launch import RunRequest, train_run

    request = RunRequest(spec=write_spec(TINY), backend=backend, run_dir=tmp_path / "run", max_steps=1,
                         overrides=["training.optimizer.lr=1e38"], options=TrainOptions(device="cpu", progress=False))
    with pytest.raises(RunError, match=r"the validation loss became nan at the end of epoch 1 \(the weights are no "
                                        r"longer finite\); nothing was saved; no checkpoint had been saved, so "):
        train_run(request)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_checkpoint_exports_with_either_backend(write_spec, tmp_path, backend):
    """Checkpoint weights are in PyTorch's layout whoever trained them, so both backends load them
    and compute the same outputs."""
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    import torch

    spec = write_spec(TINY)
    train(spec, tmp_path / "run", backend=backend, max_steps=3)
    net = check_file(spec)
    weights = tmp_path / "run" / "checkpoints" / "best.safetensors"
    torch_model = get_backend("torch").load(net, weights=weights).eval()
    keras_model = get_backend("keras").load(net, weights=weights)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    actual = np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    first = RunDir(tmp_path / "run", resume=False)
    (tmp_path / "run" / "run.json").write_text('{"backend": "torch", "overrides": []}')
    try:
        with pytest.raises(RunError, match="another run is writing to"):
            RunDir(tmp_path / "run", resume=True)
        with pytest.raises(RunError, match="already holds a run"):
            RunDir(tmp_path / "run", resume=False)
    finally:
        first.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_train_and_resume(write_spec, tmp_path, backend):
    from typer.testing import CliRunner

    from netspec.cli import app

    runner = CliRunner()
    spec = write_spec(TINY)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(spec), "--backend", backend, "--epochs", "1", "--max-steps", "3",
                                 "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert "done: best val top-1" in result.output
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((run / "run.json").read_text())
    assert info["overrides"] == ["training.epochs=1"] and info["backend"] == backend
    again = runner.invoke(app, ["train", "--resume", str(run)])
    assert again.exit_code == 0, again.output  # already finished: nothing more to do
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_train_with_bad_data_leaves_nothing_behind(write_spec, tmp_path, backend):
    from typer.testing import CliRunner

    from netspec.cli import app

    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(write_spec(TINY)), "--backend", backend, "--data", "imagefolder",
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
    assert f"{tmp_path / 'empty'} is not the folder of a netspec run: it has no run.json" in result.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_train_names_an_undecodable_image(write_spec, tmp_path, backend):
    from typer.testing import CliRunner

    from netspec.cli import app

    from .data_helpers import make_folder

    root = make_folder(tmp_path / "data", classes=tuple("abcdefghij"), per_class=2)
    broken = root / "train" / "c" / "1.png"
    broken.write_bytes(b"\x89PNG but truncated")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(write_spec(TINY)), "--backend", backend, "--data", "imagefolder",
                                      "--data-path", str(root), "--run-dir", str(run)])
    assert result.exit_code == 2, result.output
    assert f"cannot decode image {broken}" in " ".join(result.output.split())
    assert not run.exists()


def test_torch_fast_path_switches_are_refused_for_keras(write_spec, tmp_path):
    from typer.testing import CliRunner

    from netspec.cli import app

    result = CliRunner().invoke(app, ["train", str(write_spec(TINY)), "--backend", "keras", "--no-compile",
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "--no-compile: not a training switch of the keras backend" in " ".join(result.output.split())
    assert "leave it out with --backend keras (it takes --bf16)" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(app, ["train", str(write_spec(TINY)), "--backend", "keras", "--no-uniform-dropout",
                                      "--channels-last", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "--channels-last, --no-uniform-dropout: not training switches of the keras backend" in " ".join(
        result.output.split())
    assert not (tmp_path / "run").exists()


@pytest.mark.keras
@pytest.mark.parametrize("bf16", [True, False])
def test_keras_bf16_computes_in_bfloat16_on_float32_weights_and_leaves_the_policy_as_it_was(write_spec, tmp_path,
                                                                                           bf16):
    keras = pytest.importorskip("keras")
    net = check_file(write_spec(TINY))
    run = RunDir(tmp_path / "run", resume=False)
    trainer = trainer_class("keras")(get_backend("keras"), net, TrainOptions(device="cpu", progress=False, bf16=bf16),
                                     run)
    run.close()
    conv = trainer.model.get_layer("conv1")
    assert conv.compute_dtype == ("bfloat16" if bf16 else "float32")
    assert all(weight.dtype == "float32" for weight in trainer.model.weights)  # checkpoints stay float32
    assert ("mixed bf16" if bf16 else ", fp32") in trainer.describe()
    assert keras.config.dtype_policy().name == "float32"  # models built afterwards are float32 again
    assert get_backend("keras").load(net).get_layer("conv1").compute_dtype == "float32"


def test_the_epoch_line_leaves_out_top5_where_every_label_is_in_the_top_five():
    from netspec.train.loop import epoch_line

    record = {"epoch": 2, "train_loss": 0.5, "train_top1": 0.8, "val_loss": 0.6, "val_top1": 0.75, "val_top5": 0.96,
              "lr": 0.01, "images_per_s": 1234.0}
    assert "top-1 0.750 top-5 0.960  lr" in epoch_line(record, 5, classes=10)
    assert epoch_line(record, 5, classes=10).endswith("  1234 img/s")
    assert epoch_line({**record, "images_per_s": 0.4412}, 5, classes=10).endswith("  0.44 img/s")
    three = epoch_line({**record, "val_top5": 1.0}, 5, classes=3)
    assert "top-5" not in three and "top-1 0.750  lr 0.01" in three and three.startswith("epoch 2/5")


@pytest.mark.torch
def test_a_batch_too_large_for_the_cpus_memory_is_refused_before_the_run_folder_is_made(tmp_path):
    """MaxViT-T at the default batch of 128 needs about 70 GB of activations on the CPU: the kernel
    killed the run with no message and left a folder that blocked the next one."""
    import re

    from typer.testing import CliRunner

    from netspec.cli import app
    from netspec.codegen.backend import available_memory, require_training_memory
    from netspec.train.launch import training_copies

    spec = ROOT / "specs" / "alexnet-digits.yaml"
    net = check_file(spec)
    batch = available_memory() // net.totals.activation_bytes * 4  # four times what fits
    result = CliRunner().invoke(app, ["train", str(spec), "--batch-size", str(batch), "--max-steps", "1",
                                      "--epochs", "1", "--run-dir", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert f"on the CPU at batch {batch} needs about" in result.output
    hinted = int(re.search(r"--batch-size (\d+) or less", result.output).group(1))
    assert not (tmp_path / "run").exists()
    assert batch // 8 < hinted < batch // 2
    require_training_memory(net, training_copies(net), hinted, on_host=True)  # the hint fits
    # on a GPU the activations are the device's: the host's memory holds the weights' copies only
    require_training_memory(net, training_copies(net), batch, on_host=False)

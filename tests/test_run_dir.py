"""The run folder is the user's: a run goes only into a new or empty folder, removes only what it
wrote, keeps what decides its course (resolved spec, options) so that --resume reproduces it, and
stores one optimizer state, not two."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netspec import check_file
from netspec.cli import app
from netspec.codegen.backend import get_backend
from netspec.errors import RunError, SetupError, SpecError
from netspec.train import TrainingStopped, TrainOptions
from netspec.train.checkpoints import BackgroundWrites, CheckpointStore
from netspec.train.launch import RunRequest, train_run
from netspec.train.rundir import RunDir

from .test_training import BACKENDS, TINY, comparable, train, trainer_class

BAD_DATA = ["--data", "imagefolder", "--data-path", "/nonexistent/netspec-data"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_folder_with_other_files_is_refused_and_left_alone(write_spec, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "notes.txt").write_text("x")
    result = invoke("train", write_spec(TINY), "--run-dir", project, *BAD_DATA)
    assert result.exit_code == 2
    assert "is not empty and holds no netspec run" in " ".join(result.output.split())
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt"]
    assert (project / "notes.txt").read_text() == "x"


def test_the_current_folder_as_run_dir_is_refused_when_it_holds_files(write_spec, tmp_path, monkeypatch):
    spec = write_spec(TINY)
    monkeypatch.chdir(tmp_path)
    result = invoke("train", spec, "--run-dir", ".", *BAD_DATA)
    assert result.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


@pytest.mark.torch
def test_a_failed_run_in_an_empty_folder_leaves_the_folder_empty(write_spec, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    result = invoke("train", write_spec(TINY), "--run-dir", folder, *BAD_DATA)
    assert result.exit_code == 2 and "no 'train' folder" in result.output
    assert folder.is_dir() and list(folder.iterdir()) == []  # the folder was the user's: it stays


def test_a_failed_run_removes_the_folders_it_made(write_spec, tmp_path):
    result = invoke("train", write_spec(TINY), "--run-dir", tmp_path / "a" / "b" / "run", *BAD_DATA)
    assert result.exit_code == 2
    assert not (tmp_path / "a").exists()


def test_a_failed_run_keeps_a_file_someone_else_put_in_its_folder(write_spec, tmp_path, monkeypatch):
    import netspec_torch

    def fail_after_someone_writes(self, net, options, run, console=None):
        (run.path / "theirs.txt").write_text("not netspec's")
        raise SpecError.single("the data went away")

    monkeypatch.setattr(netspec_torch.TorchBackend, "train", fail_after_someone_writes)
    run = tmp_path / "run"
    result = invoke("train", write_spec(TINY), "--run-dir", run)
    assert result.exit_code == 2 and "the data went away" in result.output
    assert sorted(p.name for p in run.iterdir()) == ["theirs.txt"]


def test_tidying_checkpoints_touches_only_what_netspec_names(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    (tmp_path / "checkpoints").mkdir()
    foreign = ["notes.txt", "e0001-s0000001-mine", ".partial-keep", "last.state.pt"]
    for name in foreign:
        (tmp_path / "checkpoints" / name).write_text("user data")

    def writer(data: bytes):
        return lambda handle: handle.write(data)

    store.save({"weights": ("weights.safetensors", writer(b"w1")), "state": ("state.pt", writer(b"s1"))},
               tags=("last", "best"), label="e0001-s0000010")
    store.save({"weights": ("weights.safetensors", writer(b"w2")), "state": ("state.pt", writer(b"s2"))},
               tags=("last",), label="e0002-s0000020")
    assert all((tmp_path / "checkpoints" / name).read_text() == "user data" for name in foreign)
    best, last = store.files("best"), store.files("last")
    assert set(best) == {"weights"} and best["weights"].read_bytes() == b"w1"  # best keeps its weights only
    assert last["state"].read_bytes() == b"s2"
    assert not (best["weights"].parent / "state.pt").exists()  # the older optimizer state is gone
    assert (tmp_path / "checkpoints" / "best.safetensors").read_bytes() == b"w1"
    assert (tmp_path / "checkpoints" / "last.safetensors").read_bytes() == b"w2"
    folders = [p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()]
    assert len(folders) == 2


def interrupt_at(monkeypatch, step: int) -> None:
    cls = trainer_class("torch")
    real_step, calls = cls.train_step, {"n": 0}

    def interrupting_step(self, batch):
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, batch)

    monkeypatch.setattr(cls, "train_step", interrupting_step)


@pytest.mark.torch
def test_resume_uses_the_runs_own_spec_and_options_from_any_folder(write_spec, tmp_path, monkeypatch):
    spec = write_spec(TINY)
    reference = train(spec, tmp_path / "reference", max_steps=5)
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as patch:
        interrupt_at(patch, 8)
        with pytest.raises(TrainingStopped):
            train_run(RunRequest(spec=Path("spec.yaml"), run_dir=Path("run"), max_steps=5,
                                 options=TrainOptions(device="cpu", progress=False)))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["spec_file"] == str(spec) and info["max_steps"] == 5
    spec.write_text(spec.read_text().replace("batch_size: 64", "batch_size: 8"))  # edited mid-run
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    resumed = train_run(RunRequest(resume=Path("../run"), options=TrainOptions(device="cpu", progress=False)))
    assert comparable(resumed.records) == comparable(reference)


def test_options_that_would_change_a_run_are_refused_on_resume(tmp_path):
    result = invoke("train", "--resume", tmp_path, "--max-steps", 3)
    assert result.exit_code == 2 and "--max-steps cannot change it" in result.output
    for lr in ("0.5", "0"):  # --lr 0 was ignored (a falsy value) while --lr 0.5 was refused
        result = invoke("train", "--resume", tmp_path, "--lr", lr)
        assert result.exit_code == 2 and "--lr cannot change it" in result.output, result.output


@pytest.mark.torch
def test_fast_path_switches_that_would_change_a_run_are_refused_on_resume(write_spec, tmp_path):
    run = tmp_path / "run"
    result = invoke("train", write_spec(TINY), "--run-dir", run, "--epochs", 1, "--max-steps", 1, "--no-bf16")
    assert result.exit_code == 0, result.output
    info = (run / "run.json").read_text()
    for switches, refused in ((["--bf16"], "--bf16"), (["--no-uniform-dropout", "--no-bf16"], "--no-uniform-dropout")):
        result = invoke("train", "--resume", run, *switches)
        message = " ".join(result.output.split())
        assert result.exit_code == 2, result.output
        assert f"--resume continues a run as it was started; {refused} cannot change it" in message
        assert "the run was started with --no-bf16" in message
    assert (run / "run.json").read_text() == info
    result = invoke("train", "--resume", run, "--no-bf16")  # what the run was started with: nothing changes
    assert result.exit_code == 0 and "already finished" in result.output, result.output


@pytest.mark.torch
def test_the_run_keeps_its_data_folder_as_an_absolute_path(write_spec, tmp_path, monkeypatch):
    from .data_helpers import make_folder

    make_folder(tmp_path / "data", classes=tuple("abcdefghij"), per_class=2)
    spec = write_spec(TINY.replace("data: {dataset: digits, resize: 18, random_crop: true}",
                                   "data: {dataset: imagefolder, path: data, resize: 18}"))
    monkeypatch.chdir(tmp_path)
    result = invoke("train", spec, "--run-dir", "run", "--epochs", 1, "--max-steps", 1)
    assert result.exit_code == 0, result.output
    assert f"path: {tmp_path / 'data'}\n" in (tmp_path / "run" / "spec.yaml").read_text()


@pytest.mark.torch
def test_a_validation_share_that_leaves_nothing_to_train_on_is_refused(write_spec, tmp_path):
    spec = write_spec(TINY.replace("random_crop: true}", "random_crop: true, val_fraction: 0.9999}"))
    result = invoke("train", spec, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{spec}:" in message
    assert "data.val_fraction 0.9999 holds out 1,797 of the dataset's 1,797 samples" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.torch
def test_results_go_to_stdout_unwrapped_and_progress_to_stderr(write_spec, tmp_path):
    run = tmp_path / "a-rather-long-folder-name-for-the-run-to-make-the-summary-line-long" / "run"
    result = subprocess.run([sys.executable, "-m", "netspec", "train", str(write_spec(TINY)), "--epochs", "1",
                             "--max-steps", "2", "--run-dir", str(run), "--device", "cpu"],
                            capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "COLUMNS": "60"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("epoch 1/1  train loss") and line.endswith("img/s") for line in lines)
    done = [line for line in lines if line.startswith("done: best val top-1")]
    assert len(done) == 1 and done[0].endswith(f"checkpoints in {run / 'checkpoints'}")  # one line, not wrapped
    assert "epoch 1/1  train loss" not in result.stderr


def test_a_folder_that_is_not_a_run_is_named_as_such_by_report_and_resume(tmp_path):
    (tmp_path / "specs").mkdir()
    specs = tmp_path / "specs"
    for command in (["report", specs, "-o", tmp_path / "r.html"], ["train", "--resume", specs]):
        result = invoke(*command)
        assert result.exit_code == 2
        message = " ".join(result.output.split())
        assert f"{tmp_path / 'specs'} is not the folder of a netspec run: it has no run.json" in message
        assert "resume" not in message.split("hint")[0]  # `report` is not about resuming


HUGE = """
    name: huge
    input: [3, 8, 8]
    layers:
      - {type: flatten}
      - {name: fc1, type: linear, out_features: 100000}
      - {name: fc2, type: linear, out_features: 100000}
      - {name: fc3, type: linear, out_features: 10}
    training: {optimizer: {name: adam, lr: 0.001}}
"""


def test_training_a_model_larger_than_memory_is_refused_before_building_it(write_spec, tmp_path):
    result = invoke("train", write_spec(HUGE), "--run-dir", tmp_path / "run")
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "training needs about 299.1 GiB of memory for the 10,020,400,010 parameters of 'huge'" in message
    assert not (tmp_path / "run").exists()


def test_building_a_model_larger_than_memory_is_refused(write_spec):
    import netspec

    with pytest.raises(SetupError, match="building the model needs about 37.8 GiB of memory"):
        netspec.build(write_spec(HUGE), backend="torch")


@pytest.mark.torch
@pytest.mark.parametrize("folder", ["2024", "null", "[x]"])
def test_a_data_path_is_a_path_whatever_it_looks_like(write_spec, tmp_path, monkeypatch, folder):
    from .data_helpers import make_folder

    make_folder(tmp_path / folder, classes=tuple("abcdefghij"), per_class=2)
    spec = write_spec(TINY.replace("random_crop: true}", "random_crop: false}"))
    monkeypatch.chdir(tmp_path)
    result = invoke("train", spec, "--data", "imagefolder", "--data-path", folder, "--run-dir", "run",
                    "--epochs", 1, "--max-steps", 1)
    assert result.exit_code == 0, result.output
    import yaml

    assert yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())["data"]["path"] == str(tmp_path / folder)


@pytest.mark.torch
def test_a_run_folder_name_is_printed_as_written_never_as_markup_or_escapes(write_spec, tmp_path):
    run = tmp_path / "[bold]runs[/bold]\x1b[2J"
    result = invoke("train", write_spec(TINY), "--run-dir", run, "--epochs", 1, "--max-steps", 1)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert f"into {tmp_path}/[bold]runs[/bold]\\x1b[2J" in result.output


@pytest.mark.parametrize("option", [["--backend", "keras"], ["--run-dir", "elsewhere"]])
def test_resume_refuses_another_backend_or_folder(tmp_path, option):
    result = invoke("train", "--resume", tmp_path, *option)
    assert result.exit_code == 2 and f"{option[0]} cannot change it" in result.output


def test_resume_of_a_folder_that_does_not_exist(tmp_path):
    result = invoke("train", "--resume", tmp_path / "nowhere")
    assert result.exit_code == 2 and f"{tmp_path / 'nowhere'} does not exist" in result.output


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_resuming_a_finished_run_says_there_is_nothing_to_do(write_spec, tmp_path, backend):
    pytest.importorskip(backend)
    run = tmp_path / "run"
    first = invoke("train", write_spec(TINY), "--backend", backend, "--epochs", 1, "--max-steps", 1, "--run-dir", run)
    assert first.exit_code == 0, first.output
    assert first.output.startswith(f"training tiny (10,218 parameters) into {run}; device ")
    again = invoke("train", "--resume", run)
    assert again.exit_code == 0, again.output
    assert f"resuming tiny (10,218 parameters) into {run}" in again.output
    assert "already finished its last epoch (1); nothing to do" in " ".join(again.output.split())


@pytest.mark.torch
def test_report_goes_into_the_run_folder_by_default(write_spec, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert invoke("train", write_spec(TINY), "--epochs", 1, "--max-steps", 1, "--run-dir", run).exit_code == 0
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.html").write_text("someone else's report")
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {run / 'report.html'}\n"
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert (tmp_path / "report.html").read_text() == "someone else's report"


def test_resume_removes_what_killed_atomic_writes_left_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text('{"backend": "torch", "overrides": []}')
    ours = [run / ".metrics.abcd1234.partial.jsonl", run / ".run.x_y_z_01.partial.json",
            run / "checkpoints" / ".manifest.0a1b2c3d.partial.json"]
    theirs = [run / ".metrics.notes", run / "checkpoints" / ".manifest.backup.json", run / "notes.partial.txt"]
    for path in ours + theirs:
        path.write_text("x")
    RunDir(run, resume=True).close()
    assert not any(path.exists() for path in ours)
    assert all(path.exists() for path in theirs)


def test_a_failed_background_write_is_raised_in_the_training_thread():
    writes = BackgroundWrites()
    release = threading.Event()
    writes.start(lambda: release.wait(60))
    assert not writes.failed  # start returned while the write is still going on

    def full_disk():
        raise SpecError.single("cannot write the checkpoint: No space left on device")

    release.set()
    writes.start(full_disk)  # waits for the first write, then starts this one
    writes._thread.join()
    assert writes.failed
    with pytest.raises(SpecError, match="No space left on device"):
        writes.wait()
    assert not writes.failed
    writes.wait()  # raised once, then forgotten


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_goes_on_while_a_checkpoint_of_the_moment_it_was_asked_for_is_written(write_spec, tmp_path,
                                                                                        backend):
    from safetensors.numpy import load_file

    net = check_file(write_spec(TINY))
    run = RunDir(tmp_path / "run", resume=False)
    trainer = trainer_class(backend)(get_backend(backend), net, TrainOptions(device="cpu", progress=False), run)
    release, real_save = threading.Event(), run.checkpoints.save

    def held_back_save(*args, **kwargs):  # a slow disk
        assert release.wait(60)
        real_save(*args, **kwargs)

    run.checkpoints.save = held_back_save
    assert not trainer.write_in_background  # on the CPU, whose cores all train, a write waits (measured)
    trainer.write_in_background = True  # as on a GPU
    trainer.reset_sums(0.0, 0)
    batches = iter(trainer.batches(list(range(2 * trainer.recipe.batch_size)), epoch=0))
    trainer.train_step(next(batches))
    trainer.state["global_step"] = 1
    before = weights_of(trainer, net)
    trainer.save()
    assert not run.has_checkpoint()  # the write is held back, and training goes on meanwhile
    trainer.train_step(next(batches))
    trainer.state["global_step"] = 2
    after = weights_of(trainer, net)
    release.set()
    trainer.writes.wait()
    run.close()

    saved = load_file(CheckpointStore(run.path / "checkpoints").files("last")["weights"])
    assert saved.keys() == before.keys()
    assert all(np.array_equal(saved[key], before[key]) for key in before)
    assert not all(np.array_equal(after[key], before[key]) for key in before)  # the second step changed them
    assert CheckpointStore(run.path / "checkpoints").manifest()["last"]["step"] == 1


def weights_of(trainer, net) -> dict[str, np.ndarray]:
    """The trainer's current weights in torch layout, copied."""
    if hasattr(trainer.model, "state_dict"):
        return {key: value.detach().numpy().copy() for key, value in trainer.model.state_dict().items()}
    from netspec_keras import torch_layout_state

    return {key: np.array(value) for key, value in torch_layout_state(trainer.model, net).items()}


def test_the_lock_file_goes_with_the_run_and_a_folder_in_its_place_is_named(tmp_path):
    from netspec.train.rundir import RunDir

    run = RunDir(tmp_path / "run", resume=False)
    assert (tmp_path / "run" / ".lock").is_file()
    run.write_run_info({"backend": "torch", "overrides": []})
    with pytest.raises(RunError, match="another run is writing to"):
        RunDir(tmp_path / "run", resume=True)
    run.close()
    assert not (tmp_path / "run" / ".lock").exists()
    (tmp_path / "run" / ".lock").mkdir()  # a folder where the lock file goes: named, not an internal error
    with pytest.raises(RunError, match=r"cannot take the run's lock .*\.lock: Is a directory"):
        RunDir(tmp_path / "run", resume=True)

"""Faults during training and hostile files: kill -9 at random moments, damaged checkpoints, a
full disk, data that changes under a run, a .keras file carrying code, names that try to escape
the output folder. Each guard has a test that fails without it."""

from __future__ import annotations

import errno
import json
import random
import subprocess
import sys
import time

import pytest

from netspec import check_file
from netspec.backend import get_backend
from netspec.errors import SpecError
from netspec.fileio import sha256_file

from .data_helpers import make_folder
from .test_training import BACKENDS, STATE_SUFFIX, TINY, comparable, train

FOUR_EPOCHS = TINY.replace("epochs: 3", "epochs: 4")


def checkpoint_is_sound(run, spec) -> bool:
    """The last checkpoint on disk loads, and its weights match the checksum its state records."""
    import torch

    weights = run / "checkpoints" / "last.safetensors"
    if not weights.exists():
        return True
    state = torch.load(run / "checkpoints" / "last.state.pt", weights_only=True)
    get_backend("torch").load(check_file(spec), weights=weights)
    return state["weights_sha256"] == sha256_file(weights)


@pytest.mark.torch
@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_loses_nothing(write_spec, tmp_path):
    pytest.importorskip("torch")
    spec = write_spec(FOUR_EPOCHS)
    uninterrupted = train(spec, tmp_path / "reference")
    run = tmp_path / "run"
    moments = random.Random(20261123)
    command = [sys.executable, "-m", "netspec", "train"]
    process = subprocess.Popen([*command, str(spec), "--run-dir", str(run), "--device", "cpu"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kills = 0
    for _ in range(4):
        time.sleep(moments.uniform(3.0, 8.0))  # importing torch takes about 3 s of it
        if process.poll() is not None:
            break
        process.kill()  # SIGKILL: no handler runs, nothing is saved
        process.wait()
        kills += 1
        assert checkpoint_is_sound(run, spec)
        process = subprocess.Popen([*command, "--resume", str(run)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode()
    assert kills >= 2
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # other processes: BLAS may sum in another order, so equal to rounding, not bit for bit
    for resumed, reference in zip(comparable(metrics), comparable(uninterrupted), strict=True):
        assert resumed == pytest.approx(reference, rel=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("damage", ["bit flip", "truncated state"])
def test_a_damaged_checkpoint_is_named_on_resume(write_spec, tmp_path, backend, damage):
    spec = write_spec(TINY)
    train(spec, tmp_path / "run", backend=backend, max_steps=2)
    checkpoints = tmp_path / "run" / "checkpoints"
    if damage == "bit flip":
        target = checkpoints / "last.safetensors"
        data = bytearray(target.read_bytes())
        data[-100] ^= 0x01  # one bit of one weight
        expected = "its checksum differs from the one recorded in last.state"
    else:
        target = checkpoints / f"last{STATE_SUFFIX[backend]}"
        data = bytearray(target.read_bytes()[: target.stat().st_size // 2])
        expected = ""
    target.write_bytes(bytes(data))
    with pytest.raises(SpecError) as caught:
        train(spec, tmp_path / "run", backend=backend, resume=True)
    problem = caught.value.problems[0]
    assert problem.message.startswith(f"the checkpoint {target} is damaged")
    assert expected in problem.message and "checkpoints/best" in problem.hint


@pytest.mark.torch
def test_a_full_disk_mid_run_keeps_the_last_good_checkpoint(write_spec, tmp_path, monkeypatch):
    import safetensors.torch

    spec = write_spec(TINY)
    real_save, calls = safetensors.torch.save_file, {"n": 0}

    def save_until_the_disk_fills(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 1 wrote last and best; epoch 2's last finds no space
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_until_the_disk_fills)
    run = tmp_path / "run"
    with pytest.raises(SpecError) as caught:
        train(spec, run, max_steps=2)
    problem = caught.value.problems[0]
    assert problem.message == f"cannot write {run / 'checkpoints' / 'last.safetensors'}: No space left on device"
    assert "is intact" in problem.hint
    assert checkpoint_is_sound(run, spec)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.safetensors", "best.state.pt", "last.safetensors", "last.state.pt"]  # no partial files left


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_image_deleted_under_a_run_is_named(write_spec, tmp_path, backend):
    root = make_folder(tmp_path / "data", classes=tuple("abcdefghij"), per_class=2)
    spec = write_spec(TINY.replace("data: {dataset: digits, resize: 18, random_crop: true}",
                                   f"data: {{dataset: imagefolder, path: '{root}', resize: 18}}"))
    original_sources = __import__("netspec.train.sources", fromlist=["image_folders"])
    real = original_sources.image_folders
    gone = root / "train" / "e" / "1.png"

    def list_then_delete(*args, **kwargs):
        sources = real(*args, **kwargs)
        gone.unlink()  # after the listing, before the first epoch reads it
        return sources

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(original_sources, "image_folders", list_then_delete)
        with pytest.raises(SpecError, match=f"cannot decode image {gone}: .*No such file"):
            train(spec, tmp_path / "run", backend=backend)


@pytest.mark.keras
def test_a_keras_file_carrying_code_is_refused_and_never_run(tmp_path):
    keras = pytest.importorskip("keras")
    from netspec.backend import get_backend

    marker = tmp_path / "pwned"
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x, m=str(marker): (open(m, "w").close(), x)[1])(inputs)  # noqa: SIM115
    hostile = tmp_path / "hostile.keras"
    keras.Model(inputs, outputs).save(hostile)
    marker.unlink(missing_ok=True)
    with pytest.raises(ValueError, match="(?i)lambda"):
        keras.saving.load_model(hostile)  # safe mode, as netspec loads models
    net = check_file_text(tmp_path, "name: tiny\ninput: [4]\nlayers:\n  - {type: linear, out_features: 4}\n")
    with pytest.raises(SpecError):
        get_backend("keras").load(net, weights=hostile)  # weights only: the Lambda is never deserialized
    assert not marker.exists()


def check_file_text(folder, text):
    path = folder / "spec.yaml"
    path.write_text(text)
    return check_file(path)


@pytest.mark.parametrize("name", ["../../evil", "a/b", "x\\y", ".hidden", "con sole"])
def test_a_spec_name_cannot_lead_outside_the_output_folder(tmp_path, name):
    from netspec.errors import SpecError as Error

    with pytest.raises(Error, match="name"):
        check_file_text(tmp_path, f"name: '{name}'\ninput: [4]\nlayers:\n  - {{type: linear, out_features: 4}}\n")


def test_a_metrics_line_cut_short_by_a_kill_is_dropped(tmp_path):
    from netspec.train.rundir import RunDir

    run = RunDir(tmp_path / "run", resume=False)
    try:
        run.append_metrics({"epoch": 1, "val_top1": 0.5})
        with open(run.metrics_path, "a") as handle:
            handle.write('{"epoch": 2, "val_to')  # killed mid-write
        assert run.read_metrics() == [{"epoch": 1, "val_top1": 0.5}]
        run.truncate_metrics(1)
        assert run.metrics_path.read_text() == '{"epoch": 1, "val_top1": 0.5}\n'
        run.metrics_path.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
        with pytest.raises(SpecError, match="metrics.jsonl is damaged at line 2"):
            run.read_metrics()
    finally:
        run.close()


@pytest.mark.torch
def test_killed_between_the_first_metrics_line_and_its_checkpoint_the_run_starts_over(write_spec, tmp_path):
    spec = write_spec(TINY)
    reference = train(spec, tmp_path / "reference", max_steps=2)
    run = tmp_path / "run"
    train(spec, run, max_steps=2)
    for path in (run / "checkpoints").iterdir():  # as if killed before the first checkpoint landed
        path.unlink()
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    resumed = train(spec, run, resume=True, max_steps=2)
    assert comparable(resumed) == comparable(reference)

"""Real faults while checkpoints are written: SIGKILL at chosen moments of a checkpoint write and at
random moments of a run, a filesystem that fills up, a file-size limit. Each time the newest
complete checkpoint must load, resume must finish the run on the uninterrupted run's curve, and
nothing half-written may stay on disk."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .test_faults import checkpoint_is_sound, leftovers
from .test_training import BACKENDS, TINY, comparable, train

# SIGKILLs the process at one moment of the N+1-th checkpoint write (the first N complete), by
# wrapping the store's own steps; the kill itself is real: no handler, no flush, no cleanup
DRIVER = """
import os, signal, sys
from netspec.train import checkpoints

moment, survive = sys.argv[1], int(sys.argv[2])
calls = {"n": 0}


def due():
    calls["n"] += 1
    return calls["n"] > survive


def die():
    os.kill(os.getpid(), signal.SIGKILL)


store, real_write, real_manifest = checkpoints.CheckpointStore, checkpoints.CheckpointStore._write_file, \\
    checkpoints.atomic_write_text
real_tidy = store.tidy


def write(path, writer):
    if moment == "between the weights and the state" and path.name.startswith("state") and due():
        die()
    if moment == "in the middle of the weights" and path.name.startswith("weights") and due():
        def half(handle):
            writer(handle)
            handle.flush()
            die()
        return real_write(path, half)
    return real_write(path, writer)


def manifest(path, text):
    if moment == "before the manifest" and due():
        die()
    return real_manifest(path, text)


def tidy(self):
    if moment == "before tidying" and due():
        die()
    return real_tidy(self)


store._write_file = staticmethod(write)
store.tidy = tidy
checkpoints.atomic_write_text = manifest
from netspec.cli import main

sys.argv = ["netspec", "train", *sys.argv[3:]]
main()
"""

MOMENTS = ["in the middle of the weights", "between the weights and the state", "before the manifest",
           "before tidying"]
CASES = [pytest.param("torch", moment, marks=pytest.mark.torch) for moment in MOMENTS] + [
    pytest.param("keras", moment, marks=[pytest.mark.keras, pytest.mark.slow])
    for moment in MOMENTS[1:3]]


def netspec_command(*args) -> list[str]:
    return [sys.executable, "-m", "netspec", *map(str, args)]


def state_files(run: Path) -> list[Path]:
    return sorted(run.glob("checkpoints/*/state.*"))


@pytest.mark.parametrize(("backend", "moment"), CASES)
def test_a_kill_at_each_moment_of_a_checkpoint_write_loses_nothing(write_spec, tmp_path, backend, moment):
    spec = write_spec(TINY)
    reference = train(spec, tmp_path / "reference", backend=backend, max_steps=2)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run = tmp_path / "run"
    killed = subprocess.run([sys.executable, str(driver), moment, "1", str(spec), "--backend", backend,
                             "--run-dir", str(run), "--max-steps", "2", "--device", "cpu"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert checkpoint_is_sound(run, spec)
    manifest = json.loads((run / "checkpoints" / "manifest.json").read_text())
    assert manifest["last"]["epoch"] == (2 if moment == "before tidying" else 1)

    resumed = subprocess.run(netspec_command("train", "--resume", run), capture_output=True, text=True,
                             timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for got, want in zip(comparable(metrics), comparable(reference), strict=True):
        assert got == pytest.approx(want, rel=1e-4)
    assert leftovers(run) == []  # the killed write's partial folder or stale checkpoint was cleaned up
    assert len(state_files(run)) == 1  # only `last` keeps an optimizer state


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


RANDOM_KILLS = 8  # each costs a process start (~10 s on 2 cores); the moments of a write have their own test


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_kills_at_random_moments_then_resume_loses_nothing(write_spec, tmp_path, backend):
    """Each kill lands at a random moment after the run has made progress since its last start,
    so kills fall into steps, evaluations and checkpoint writes alike."""
    spec = write_spec(TINY.replace("epochs: 3", "epochs: 500"))
    run = tmp_path / "run"
    moments = random.Random(20261123)
    command = netspec_command("train", spec, "--backend", backend, "--run-dir", run, "--max-steps", 1,
                              "--device", "cpu")
    manifest = run / "checkpoints" / "manifest.json"

    def progress() -> int:
        try:
            return json.loads(manifest.read_text())["last"]["step"]
        except (OSError, ValueError, KeyError):
            return 0

    kills = 0
    while kills < RANDOM_KILLS:
        before = progress()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert wait_for(lambda before=before, process=process: progress() > before or process.poll() is not None, 120)
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(moments.uniform(0.0, 0.8))
        process.kill()
        process.wait()
        process.stderr.close()
        kills += 1
        assert checkpoint_is_sound(run, spec)
        command = netspec_command("train", "--resume", run)

    epochs = json.loads(manifest.read_text())["last"]["epoch"] + 1
    finished = subprocess.run(netspec_command("train", "--resume", run, "--epochs", epochs), capture_output=True,
                              text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr
    reference = train(write_spec(TINY.replace("epochs: 3", f"epochs: {epochs}"), "reference.yaml"),
                      tmp_path / "reference", backend=backend, max_steps=1)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == epochs
    for got, want in zip(comparable(metrics), comparable(reference), strict=True):
        assert got == pytest.approx(want, rel=1e-4)
    assert leftovers(run) == []
    assert len(state_files(run)) == 1


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 2 MiB tmpfs (needs root, as on the CI machine)."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


FILL_AFTER_FIRST_CHECKPOINT = """
import sys
from pathlib import Path
from netspec.train import checkpoints

real_save, calls, disk = checkpoints.CheckpointStore.save, {"n": 0}, Path(sys.argv[1])


def save(self, *args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 2:  # the disk fills up (for real) while epoch 2 trains
        with open(disk / "filler", "wb") as handle:
            try:
                while True:
                    handle.write(b"\\0" * 65536)
            except OSError:
                pass
    return real_save(self, *args, **kwargs)


checkpoints.CheckpointStore.save = save
if sys.argv[2] == "background":  # as on a GPU: the failed write surfaces at the next step
    from netspec.train.loop import EpochLoop

    EpochLoop.write_in_background = property(lambda self: True, lambda self, value: None)
from netspec.cli import main

sys.argv = ["netspec", "train", *sys.argv[3:]]
main()
"""


@pytest.mark.parametrize(("backend", "writes"), [pytest.param("torch", "in turn", marks=pytest.mark.torch),
                                                  pytest.param("keras", "in turn", marks=pytest.mark.keras),
                                                  pytest.param("torch", "background", marks=pytest.mark.torch)])
def test_a_real_full_disk_stops_cleanly_and_keeps_the_last_checkpoint(write_spec, tmp_path, small_filesystem,
                                                                      backend, writes):
    spec = write_spec(TINY)
    driver = tmp_path / "driver.py"
    driver.write_text(FILL_AFTER_FIRST_CHECKPOINT)
    run = small_filesystem / "run"
    result = subprocess.run([sys.executable, str(driver), str(small_filesystem), writes, str(spec),
                             "--backend", backend,
                             "--run-dir", str(run), "--max-steps", "2", "--device", "cpu"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr
    assert f"cannot write the checkpoint in {run / 'checkpoints'}: No space left on device" in result.stderr
    assert "previous checkpoint is intact" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert checkpoint_is_sound(run, spec)
    assert json.loads((run / "checkpoints" / "manifest.json").read_text())["last"]["epoch"] == 1
    assert leftovers(run) == []  # the partial checkpoint was removed

    (small_filesystem / "filler").unlink()  # space again: the run resumes and finishes
    resumed = subprocess.run(netspec_command("train", "--resume", run), capture_output=True, text=True,
                             timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.torch
def test_a_file_size_limit_stops_cleanly(write_spec, tmp_path):
    """RLIMIT_FSIZE (`ulimit -f`): torch.save reports the EFBIG as its own RuntimeError; the user
    hears the real reason."""
    spec = write_spec(TINY)
    run = tmp_path / "run"

    def limit():
        # the weights (41 KB) fit; the optimizer state (twice as large, with Adam) does not
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    result = subprocess.run(netspec_command("train", spec, "--run-dir", run, "--max-steps", 2, "--device", "cpu"),
                            capture_output=True, text=True, timeout=300, check=False, preexec_fn=limit,
                            env={**os.environ, "PYTHONFAULTHANDLER": "0"})
    assert result.returncode == 2, result.stderr
    assert "File too large" in result.stderr and "Traceback" not in result.stderr
    assert not run.exists()  # it failed before its first checkpoint: nothing of it is left


FILL_BEFORE_FIRST_METRICS = """
import sys
from pathlib import Path
from netspec.train import rundir

real_append, disk = rundir.RunDir.append_metrics, Path(sys.argv[1])


def append_metrics(self, record):
    with open(disk / "filler", "wb") as handle:  # the disk fills up (for real) just before the line
        try:
            while True:
                handle.write(b"\\\\0" * 4096)
        except OSError:
            pass
    return real_append(self, record)


rundir.RunDir.append_metrics = append_metrics
from netspec.cli import main

sys.argv = ["netspec", "train", *sys.argv[2:]]
main()
"""


@pytest.mark.torch
def test_a_real_full_disk_at_the_first_metrics_line_leaves_a_folder_a_new_run_can_use(write_spec, tmp_path,
                                                                                     small_filesystem):
    """It was an internal error that left an empty metrics.jsonl, after which both a new run and
    --resume were refused."""
    spec = write_spec(TINY)
    driver = tmp_path / "driver.py"
    driver.write_text(FILL_BEFORE_FIRST_METRICS)
    run = small_filesystem / "run"
    result = subprocess.run([sys.executable, str(driver), str(small_filesystem), str(spec), "--run-dir", str(run),
                             "--max-steps", "2", "--device", "cpu"], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 2, result.stderr
    assert f"cannot append epoch 1 to {run / 'metrics.jsonl'}: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert not run.exists()  # a new run that failed before its first checkpoint leaves nothing
    (small_filesystem / "filler").unlink()
    again = subprocess.run(netspec_command("train", spec, "--run-dir", run, "--max-steps", 2, "--device", "cpu"),
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3

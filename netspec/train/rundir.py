"""The run directory that ``netspec train`` writes, the same for every backend:

    RUN_DIR/
      run.json               what was run: options, versions, command (written at start)
      spec.yaml              the resolved spec the run trains (extends, params and --set applied);
                             --resume trains from it, so editing the spec file cannot change a run
      metrics.jsonl          one JSON object per finished epoch (appended, fsynced)
      checkpoints/           manifest.json naming the last and best checkpoints (netspec.train.checkpoints);
                             last.safetensors and best.safetensors hold their weights
      curves.png             loss and accuracy per epoch (written at the end)
      .lock                  held while a run writes here

A new run goes into a new or empty folder only; a folder that holds anything else is refused, so a
run never mixes with (or, when it fails, removes) files it did not write. Framework-free: backends
write their checkpoint files through ``checkpoints`` (a CheckpointStore).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspec.errors import RunError, shown
from netspec.files.fileio import leftovers_of
from netspec.files.outputs import atomic_write_text
from netspec.train import FAST_PATH_PARTS
from netspec.train.checkpoints import CheckpointStore

RUN_FILES = ("run.json", "spec.yaml", "metrics.jsonl", "curves.png", ".lock")
METRIC_KEYS = ("epoch", "step", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr",
               "images_per_s", "seconds")
# what run.json must hold for a run to be resumed or reported: field -> accepted types
_INFO_FIELDS: dict[str, tuple[type, ...]] = {"backend": (str,), "overrides": (list,)}


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# what report and resume read besides, when present: a test and how it is described
_OPTIONAL_INFO_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "command": (_strings, "a list of strings"),
    "versions": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
                 "an object of version strings"),
    "netspec_version": (lambda v: isinstance(v, str), "a string"),
    "spec_file": (lambda v: isinstance(v, str), "a string"),
    "spec": (lambda v: isinstance(v, dict), "an object (the resolved spec)"),
}


class RunDir:
    """``follower=True`` is for the other processes of a data-parallel run: they read checkpoints
    from the folder that rank 0 owns, and write nothing."""

    def __init__(self, path: str | Path, *, resume: bool, follower: bool = False):
        self.path, self.follower, self._lock = Path(path), follower, None
        self.checkpoints = CheckpointStore(self.path / "checkpoints")
        self._created: Path | None = None  # the outermost folder this run made, if it made one
        self._written: set[str] = set()  # the run files this process wrote, for discard()
        if follower:
            return
        if resume:
            self.read_info(self.path)
            self.read_metrics()  # a damaged file is named now, before any work
        else:
            self._claim_folder()
        try:
            (self.path / "checkpoints").mkdir(exist_ok=True)
        except OSError as exc:
            raise RunError.single(f"cannot create {self.path / 'checkpoints'}: {exc.strerror}",
                                  hint="choose a writable --run-dir") from None
        self._lock = self._acquire_lock()
        if not resume:
            self._written.add(".lock")
        if resume:
            try:
                self._remove_leftovers()
            except BaseException:  # a damaged checkpoint list: the lock goes with the failed start
                self.close()
                raise

    def _claim_folder(self) -> None:
        """A new run needs a new or empty folder: it may only ever remove what it wrote itself."""
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_dir()):
            raise RunError.single(f"--run-dir {self.path} exists and is not a folder",
                                  hint="choose a new folder for the run")
        if self.path.is_dir():
            if self.holds_run(self.path):
                raise RunError.single(f"the run directory {self.path} already holds a run",
                                      hint="pass --resume to continue it, or choose another --run-dir")
            if any(self.path.iterdir()):
                raise RunError.single(f"the run directory {self.path} is not empty and holds no netspec run",
                                      hint="choose a new or empty folder; netspec never mixes a run with "
                                           "other files")
            return
        missing = self.path.absolute()
        while not missing.parent.exists():
            missing = missing.parent
        try:
            self.path.mkdir(parents=True)
        except OSError as exc:
            raise RunError.single(f"cannot create the run directory {self.path}: {exc.strerror}",
                                  hint="choose a writable --run-dir") from None
        self._created = missing

    @staticmethod
    def holds_run(path: Path) -> bool:
        """Whether a folder has a run's files."""
        checkpoints = path / "checkpoints"
        return ((path / "run.json").exists() or (path / "metrics.jsonl").exists()
                or (checkpoints.is_dir() and any(checkpoints.iterdir())))

    def _acquire_lock(self):
        path = self.path / ".lock"
        busy = RunError.single(f"another run is writing to {shown(self.path)}",
                               hint="wait for it to finish, or choose another --run-dir")
        try:
            handle = open(path, "a+")  # noqa: SIM115  (held for the run's lifetime)
        except OSError as exc:  # a folder named .lock, a read-only run folder
            raise RunError.single(f"cannot take the run's lock {shown(path)}: {exc.strerror or exc}",
                                  hint="netspec keeps a plain file .lock there while a run writes; remove "
                                       "what stands in its place") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the lock file is removed when a run ends: holding a file that was just unlinked (or
            # replaced) locks nothing another run can see
            if os.fstat(handle.fileno()).st_ino != os.stat(path).st_ino:
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            handle.close()
            raise busy from None
        return handle

    def close(self) -> None:
        """Release the lock, removing its file (while still held, so no other run ever holds the
        removed one unseen)."""
        if self._lock is not None:
            if not self.follower:
                with contextlib.suppress(OSError):
                    (self.path / ".lock").unlink()
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def discard(self) -> None:
        """Undo a new run that failed before its first checkpoint: remove the files it wrote, and
        the folders it made once they are empty. Anything else found there stays."""
        self.close()
        for name in self._written:
            (self.path / name).unlink(missing_ok=True)
        self._remove_leftovers()
        _rmdir_if_empty(self.path / "checkpoints")
        if self._created is not None:
            folder = self.path.absolute()
            while _rmdir_if_empty(folder) and folder != self._created:
                folder = folder.parent

    def _remove_leftovers(self) -> None:
        for name in RUN_FILES:
            for leftover in leftovers_of(self.path / name):
                leftover.unlink(missing_ok=True)
        self.checkpoints.tidy()

    # --- files ---------------------------------------------------------------------------------

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def spec_path(self) -> Path:
        return self.path / "spec.yaml"

    def has_checkpoint(self) -> bool:
        return self.checkpoints.has("last")

    def write_run_info(self, info: dict[str, Any]) -> None:
        if self.follower:
            return
        atomic_write_text(self.path / "run.json", json.dumps(info, indent=2) + "\n")
        self._written.add("run.json")

    def write_spec(self, text: str) -> None:
        if not self.follower:
            atomic_write_text(self.spec_path, text)
            self._written.add(self.spec_path.name)

    def read_run_info(self) -> dict[str, Any]:
        return self.read_info(self.path)

    @staticmethod
    def read_info(path: str | Path) -> dict[str, Any]:
        """What an earlier run recorded in its run.json (without taking the run's lock)."""
        path = Path(path)
        info_path = path / "run.json"
        if not path.exists():
            raise RunError.single(f"{path} does not exist", hint="pass the folder of an earlier `netspec train` run")
        if not path.is_dir() or not info_path.is_file():
            raise RunError.single(f"{path} is not the folder of a netspec run: it has no run.json",
                                  hint="pass the folder of an earlier `netspec train` run (runs/NAME-TIME)")
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError.single(f"cannot read {info_path}: {exc}") from None
        problem = _info_problem(info)
        if problem:
            raise RunError.single(f"{info_path} is damaged: {problem}",
                                  hint="it is written by `netspec train`; restore it or start the run again")
        return info

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.follower:
            return
        created = not self.metrics_path.exists()
        if created:
            self._written.add(self.metrics_path.name)  # so a new run that fails here leaves nothing behind
        # unbuffered: a full disk fails the write here, not later when a buffer is flushed on close
        fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            before = os.lseek(fd, 0, os.SEEK_END)
            line = memoryview((json.dumps(record) + "\n").encode("utf-8"))
            try:
                while line:
                    line = line[os.write(fd, line):]
                os.fsync(fd)
            except OSError as exc:  # a full disk: the file keeps its complete lines, and the run says so
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, before)
                raise RunError.single(f"cannot append epoch {record.get('epoch')} to {shown(self.metrics_path)}: "
                                      f"{exc.strerror or exc}",
                                      hint="free some space and start the run again" if created else
                                      "free some space and resume the run (--resume); the last checkpoint is "
                                      "intact") from None
        finally:
            os.close(fd)
        self._written.add(self.metrics_path.name)

    def read_metrics(self) -> list[dict[str, Any]]:
        return self.metrics_of(self.path)

    @staticmethod
    def metrics_of(path: str | Path) -> list[dict[str, Any]]:
        """A run folder's finished epochs' records. A last line cut short (the process was killed
        while appending it) is dropped: its epoch's checkpoint was not written yet either."""
        metrics = Path(path) / "metrics.jsonl"
        if not metrics.exists():
            return []
        lines = [line for line in metrics.read_text(errors="replace").splitlines() if line.strip()]
        records: list[dict[str, Any]] = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                if number == len(lines):
                    break
                raise _damaged_metrics(metrics, number, "it is not JSON") from None
            problem = _record_problem(record, previous=records[-1]["epoch"] if records else 0)
            if problem:
                raise _damaged_metrics(metrics, number, problem)
            records.append(record)
        return records

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the records of the first ``epochs`` epochs: what the checkpoint being resumed saw."""
        if self.follower:
            return
        kept = [r for r in self.read_metrics() if r["epoch"] <= epochs]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))


def _info_problem(info: Any) -> str | None:
    if not isinstance(info, dict):
        return f"it holds a JSON {type(info).__name__}, not an object"
    for key, types in _INFO_FIELDS.items():
        if not isinstance(info.get(key), types):
            return f"'{key}' is missing or not a {types[0].__name__}"
    if not _strings(info["overrides"]):
        return "'overrides' must be a list of strings"
    for key, (fits, what) in _OPTIONAL_INFO_FIELDS.items():
        if info.get(key) is not None and not fits(info[key]):
            return f"'{key}' must be {what}"
    if _holds_nul(info):
        return "it contains a NUL character"
    shape = info.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) in (1, 3)
                                  and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        return "'input_shape' must be a list of 1 or 3 positive integers"
    steps = info.get("max_steps")
    if steps is not None and not (isinstance(steps, int) and not isinstance(steps, bool) and steps > 0):
        return "'max_steps' must be a positive integer"
    switches = info.get("fast_path")
    if switches is not None and not (isinstance(switches, dict) and all(
            key in FAST_PATH_PARTS and value in (True, False, None) for key, value in switches.items())):
        return f"'fast_path' must map {', '.join(FAST_PATH_PARTS)} to true, false or null"
    return None


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(_holds_nul(item) for item in value)


def _record_problem(record: Any, previous: int) -> str | None:
    if not isinstance(record, dict):
        return "the line is not a JSON object"
    for key in METRIC_KEYS:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"'{key}' is missing or not a number"
        if not math.isfinite(value) and key in ("epoch", "step"):
            return f"'{key}' is not finite"
        if key in ("train_top1", "val_top1", "val_top5") and not 0 <= value <= 1:  # NaN too
            return f"'{key}' is {value!r}, not an accuracy from 0 to 1"
    if not isinstance(record["epoch"], int) or record["epoch"] != previous + 1:
        return f"'epoch' is {record['epoch']!r} where {previous + 1} was expected"
    return None


def _damaged_metrics(path: Path, line: int, why: str) -> RunError:
    return RunError.single(f"{path} is damaged at line {line}: {why}",
                           hint="each line is one epoch's record as `netspec train` wrote it; "
                                "remove the damaged lines and the ones after them")


def _rmdir_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
        return True
    except OSError:
        return False

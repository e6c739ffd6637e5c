"""The run directory that ``netspec train`` writes, the same for every backend:

    RUN_DIR/
      run.json               what was run: spec, options, versions, command (written at start)
      metrics.jsonl          one JSON object per finished epoch (appended, fsynced)
      checkpoints/last.*     the latest checkpoint (written atomically)
      checkpoints/best.*     the checkpoint with the best validation top-1
      curves.png             loss and accuracy per epoch (written at the end)
      .lock                  held while a run writes here

Framework-free: backends put their own files under ``checkpoints/`` through ``checkpoint_path``.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from netspec.errors import SpecError
from netspec.fileio import atomic_write_text


class RunDir:
    """``follower=True`` is for the other processes of a data-parallel run: they read checkpoints
    from the folder that rank 0 owns, and write nothing."""

    def __init__(self, path: str | Path, *, resume: bool, follower: bool = False):
        self.path, self.follower, self._lock = Path(path), follower, None
        if follower:
            return
        if resume:
            self.read_info(self.path)
        elif self.holds_run(self.path):
            raise SpecError.single(f"the run directory {self.path} already holds a run",
                                   hint="pass --resume to continue it, or choose another --run-dir")
        try:
            (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpecError.single(f"cannot create the run directory {self.path}: {exc.strerror}",
                                   hint="choose a writable --run-dir") from None
        self._lock = self._acquire_lock()

    @staticmethod
    def holds_run(path: Path) -> bool:
        """Whether a folder has a run's files (other files do not stop a new run there)."""
        checkpoints = path / "checkpoints"
        return ((path / "run.json").exists() or (path / "metrics.jsonl").exists()
                or (checkpoints.is_dir() and any(checkpoints.iterdir())))

    def _acquire_lock(self):
        handle = open(self.path / ".lock", "a+")  # noqa: SIM115  (held for the run's lifetime)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SpecError.single(f"another run is writing to {self.path}",
                                   hint="wait for it to finish, or choose another --run-dir") from None
        return handle

    def close(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # --- files ---------------------------------------------------------------------------------

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def checkpoint_path(self, tag: str, suffix: str) -> Path:
        return self.path / "checkpoints" / f"{tag}{suffix}"

    def write_run_info(self, info: dict[str, Any]) -> None:
        if self.follower:
            return
        atomic_write_text(self.path / "run.json", json.dumps(info, indent=2) + "\n")

    def read_run_info(self) -> dict[str, Any]:
        return self.read_info(self.path)

    @staticmethod
    def read_info(path: str | Path) -> dict[str, Any]:
        """What an earlier run recorded in its run.json (without taking the run's lock)."""
        info_path = Path(path) / "run.json"
        if not info_path.is_file():
            raise SpecError.single(f"nothing to resume in {path}: it has no run.json",
                                   hint="pass the folder of an earlier `netspec train` run")
        try:
            return json.loads(info_path.read_text())
        except (OSError, ValueError) as exc:
            raise SpecError.single(f"cannot read {info_path}: {exc}") from None

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.follower:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

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
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(json.loads(line))
            except ValueError:
                if number == len(lines):
                    break
                raise SpecError.single(f"{metrics} is damaged at line {number}",
                                       hint="remove that line (each line is one epoch's record)") from None
        return records

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the records of the first ``epochs`` epochs: what the checkpoint being resumed saw."""
        if self.follower:
            return
        kept = [r for r in self.read_metrics() if r["epoch"] <= epochs]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

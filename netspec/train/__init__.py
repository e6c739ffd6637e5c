"""Training, shared by the backends: options, the run directory and its files."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainOptions:
    """What `netspec train` was asked to do beyond the spec's own recipe (which --set overrides)."""

    resume: bool = False
    device: str = "auto"
    max_steps_per_epoch: int | None = None  # for quick runs and tests
    workers: int = 0
    progress: bool = True


class TrainingStopped(Exception):
    """The run stopped before its last epoch (interrupted); a checkpoint was saved."""

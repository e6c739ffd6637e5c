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
    # the fast path's parts (torch); None: on for a CUDA device, off otherwise
    device_data: bool | None = None  # uint8 dataset on the device, augmented there
    channels_last: bool | None = None
    bf16: bool | None = None  # bfloat16 autocast
    compile: bool | None = None  # torch.compile
    uniform_dropout: bool | None = None  # dropout masks from torch.rand (torch; None: on for the CPU)


FAST_PATH_PARTS = ("device_data", "channels_last", "bf16", "compile", "uniform_dropout")


class TrainingStopped(Exception):
    """The run stopped before its last epoch (interrupted); a checkpoint was saved."""

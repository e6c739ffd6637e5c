"""The learning-rate schedules of a spec's recipe, framework-free, so both backends follow the same
per-epoch learning rates: constant, step (multiply by ``factor`` every ``step_size`` epochs),
cosine (to ``min_lr`` over the run) and plateau (the paper's "divide by 10 when the validation
loss stops improving", with PyTorch's ReduceLROnPlateau rules: relative threshold 1e-4, cut
after more than ``patience`` epochs without improvement, never below ``min_lr``)."""

from __future__ import annotations

import math
from typing import Any

from netspec.language.spec import TrainingSpec

PLATEAU_THRESHOLD = 1e-4


class LearningRate:
    def __init__(self, recipe: TrainingSpec):
        self.schedule, self.epochs = recipe.schedule, recipe.epochs
        self.base = recipe.optimizer.lr
        self.state: dict[str, Any] = {"lr": self.base, "best": math.inf, "bad_epochs": 0}

    @property
    def lr(self) -> float:
        return self.state["lr"]

    def after_epoch(self, epochs_done: int, val_loss: float) -> float:
        """The learning rate for the next epoch, given the one just finished."""
        schedule, state = self.schedule, self.state
        if schedule.name == "step":
            state["lr"] = self.base * schedule.factor ** (epochs_done // schedule.step_size)
        elif schedule.name == "cosine":
            progress = min(epochs_done / self.epochs, 1.0)
            state["lr"] = schedule.min_lr + (self.base - schedule.min_lr) * (1 + math.cos(math.pi * progress)) / 2
        elif schedule.name == "plateau":
            if val_loss < state["best"] * (1 - PLATEAU_THRESHOLD):
                state["best"], state["bad_epochs"] = val_loss, 0
            else:
                state["bad_epochs"] += 1
            if state["bad_epochs"] > schedule.patience:
                state["lr"] = max(state["lr"] * schedule.factor, schedule.min_lr)
                state["bad_epochs"] = 0
        return state["lr"]

    def state_dict(self) -> dict[str, Any]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = dict(state)

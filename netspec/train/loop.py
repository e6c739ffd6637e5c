"""The training loop both backends share: epochs and steps, the progress bar, per-epoch metrics,
the learning-rate schedule, best/last checkpoints, stops on request and on a non-finite loss.

A backend subclasses ``EpochLoop`` and supplies the framework parts: batches for a list of sample
indices, one optimizer step, the running sums, evaluation, and checkpoint files. The loop's own
state (``self.state``) is plain JSON-able data that the backend stores beside its weights.

Exact resume: each epoch's sample order is a function of (seed, epoch), a checkpoint records how
many batches of the epoch are done, and a stop request (Ctrl-C, SIGTERM) is acted on only between
steps, so the checkpoint holds the state after a whole step, never half of one.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from netspec.analysis.checker import CheckedNet
from netspec.errors import RunError, UserError, shown
from netspec.train import TrainingStopped, TrainOptions
from netspec.train.checkpoints import BackgroundWrites, Writer, damaged_checkpoint
from netspec.train.rundir import RunDir
from netspec.train.schedule import LearningRate
from netspec.train.sources import epoch_order, label_positions

PROGRESS_EVERY = 10  # steps between progress-bar refreshes (each reads the running sums back)


class NonFiniteLoss(Exception):
    """Raised by a backend (from train_step, or from read_sums when it checks in arrears) when the
    loss is NaN or infinite; ``step`` is the 1-based step in the epoch when known. Nothing is saved
    after it, so the last good checkpoint stays on disk."""

    def __init__(self, value: float, step: int | None = None):
        super().__init__(value)
        self.value, self.step = value, step


class StopRequests:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a request that the loop honours after the
    current step; a second one interrupts at once (the last checkpoint is left as it was)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def fresh_partial() -> dict[str, float]:
    return {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def loop_state_problem(state: Any) -> str | None:
    """What is wrong with a checkpoint's loop state (as ``EpochLoop.state`` holds it), or None: a
    file that passes its checksum can still have been written by someone else."""
    if not isinstance(state, dict):
        return "is not a mapping"
    for key in ("epoch", "batches_done", "global_step"):
        if not _count(state.get(key)):
            return f"has no count '{key}'"
    if not _number(state.get("best_top1")) or not -1 <= state["best_top1"] <= 1:
        return "has no 'best_top1' from -1 to 1"
    partial, schedule = state.get("partial"), state.get("schedule")
    if not isinstance(partial, dict) or not all(_number(partial.get(key)) and partial[key] >= 0
                                                for key in fresh_partial()):
        return "has no 'partial' sums of the epoch (loss, correct, seen, seconds)"
    if not isinstance(schedule, dict) or not (_number(schedule.get("lr")) and 0 < schedule["lr"] < math.inf
                                              and _number(schedule.get("best")) and _count(schedule.get("bad_epochs"))):
        return "has no learning-rate schedule (lr, best, bad_epochs)"
    return None


class EpochLoop:
    """Subclasses implement the hooks below; ``fit`` runs the remaining epochs."""

    backend_name: str  # as run.json records it
    state_file: str  # the name of a checkpoint's training-state file, which tells the backends apart

    def __init__(self, net: CheckedNet, options: TrainOptions, run: RunDir, console=None):
        self.net, self.options, self.run, self.console = net, options, run, console
        self.recipe = net.spec.training
        # labels per sample: one per pixel for a network that classifies every pixel, where the
        # accuracy is the share of pixels right
        self.positions = label_positions(net)
        self.schedule = LearningRate(self.recipe)
        self.writes = BackgroundWrites()
        self.state: dict[str, Any] = {"epoch": 0, "batches_done": 0, "global_step": 0, "best_top1": -1.0,
                                      "partial": fresh_partial(), "schedule": self.schedule.state_dict()}

    # --- hooks -------------------------------------------------------------------------------------

    def train_size(self) -> int:
        raise NotImplementedError

    def batches(self, indices: list[int], epoch: int) -> Iterable[Any]:
        """The training batches for these sample indices, in order (augmented for training)."""
        raise NotImplementedError

    def reset_sums(self, loss: float, correct: int) -> None:
        """Start the epoch's running sums of loss × samples and correct predictions at these values."""
        raise NotImplementedError

    def train_step(self, batch: Any) -> int:
        """One optimizer step; adds to the running sums; returns the batch's sample count. Raises
        NonFiniteLoss (without updating the weights) when the loss is not finite."""
        raise NotImplementedError

    def read_sums(self) -> tuple[float, int]:
        raise NotImplementedError

    def evaluate(self) -> tuple[float, float, float]:
        """(validation loss, top-1, top-5) over the whole validation set."""
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """Where and how training runs (device, processes, optimisations), for the run's header."""
        raise NotImplementedError

    def should_stop(self, requested: bool) -> bool:
        """Whether to stop before the next step, given whether this process was asked to."""
        return requested

    def checkpoint_files(self, *, snapshot: bool) -> dict[str, tuple[str, Writer]]:
        """The files of a checkpoint by role: 'weights' (safetensors, torch layout) and 'state'
        (optimizer, RNG and ``self.state``), each as (file name, function writing it to a handle).
        With ``snapshot`` the writers run on a background thread while training goes on, so they
        must write copies taken here, never the live weights or optimizer state."""
        raise NotImplementedError

    def load_checkpoint(self, files: dict[str, Path]) -> dict[str, Any]:
        """Restore weights, optimizer and RNG from a checkpoint's verified files (by role); return
        the saved loop state."""
        raise NotImplementedError

    write_in_background = False  # where training leaves the host's cores free (an accelerator trains)

    def save(self, tags: tuple[str, ...] = ("last",), *, wait: bool = False) -> None:
        """Write a checkpoint of the state as it is now and make it the one ``tags`` name, as one
        unit: in the background while the next epoch trains (where that pays), or to the end."""
        self.writes.wait()  # one write at a time; a failed one is raised here
        background = self.write_in_background and not wait
        files = self.checkpoint_files(snapshot=background)
        label = f"e{self.state['epoch']:04d}-s{self.state['global_step']:07d}"
        info = {"epoch": self.state["epoch"], "step": self.state["global_step"]}

        def write() -> None:
            self.run.checkpoints.save(files, tags=tags, label=label, info=info)

        if background:
            self.writes.start(write)
        else:
            write()

    # --- the loop ----------------------------------------------------------------------------------

    def restore(self) -> None:
        """Continue from the last complete checkpoint; a run stopped before its first checkpoint
        starts over (it had nothing to lose; a metrics line written just before it is dropped)."""
        if not self.run.has_checkpoint():
            written = self.run.checkpoints.complete_folders()
            if written:  # a list that lost its 'last' entry: starting over would empty metrics.jsonl
                raise RunError.single(
                    f"{shown(self.run.checkpoints.folder / 'manifest.json')} names no 'last' checkpoint, yet "
                    f"checkpoints/ holds {', '.join(written[-3:])}: the list is damaged",
                    hint="restore manifest.json (nothing was removed or changed), or start the run again with "
                         "a new --run-dir")
            if self.console is not None:
                self.console.print(f"{shown(self.run.path)} has no checkpoint yet: starting the run from the beginning")
            self.run.truncate_metrics(0)
            return
        files = self.run.checkpoints.files("last")
        state_file = files.get("state")
        if state_file is not None and state_file.name != self.state_file:
            raise RunError.single(
                f"the checkpoint in {shown(state_file.parent)} was written by another backend (its training state "
                f"is {shown(state_file.name)}; the {self.backend_name} backend writes {self.state_file}), yet "
                f"run.json says '{self.backend_name}'", hint="set 'backend' in run.json back to the backend that "
                "trained the run; to go on in another backend, export the weights and start a new run from them")
        state = self.load_checkpoint(files)
        problem = loop_state_problem(state)
        if problem:
            raise damaged_checkpoint(state_file or files["weights"], f"its loop state {problem}")
        self.state = state
        self.schedule.load_state_dict(self.state["schedule"])
        self.run.truncate_metrics(self.state["epoch"])

    def fit(self) -> list[dict[str, Any]]:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        # the bar is progress, not a result: stderr, so `netspec train ... > log` keeps the epoch lines
        progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[stats]}"),
                            TimeRemainingColumn(), console=Console(stderr=True), disable=not self.options.progress,
                            transient=True)
        if self.console is not None:
            verb = "resuming" if self.options.resume else "training"
            self.console.print(f"{verb} {self.net.spec.name} ({self.net.totals.params:,} parameters) into "
                               f"{shown(self.run.path)}; {self.describe()}")
            if self.state["epoch"] >= self.recipe.epochs:
                self.console.print(f"the run already finished its last epoch ({self.recipe.epochs}); nothing to do "
                                   f"(netspec train --resume {shown(self.run.path)} --epochs N trains it for longer)")
        self.set_lr(self.schedule.lr)
        try:
            with progress, StopRequests() as stop:
                while self.state["epoch"] < self.recipe.epochs:
                    self._train_epoch(progress, stop)
                    record = self._finish_epoch()
                    if self.console is not None:
                        self.console.print(epoch_line(record, self.recipe.epochs, self.net.output_shape[0]))
        except BaseException:
            # the checkpoint being written lands (or fails) before the caller looks at the folder
            self.writes.wait(raise_failure=False)
            raise
        self.writes.wait()
        return self.run.read_metrics()

    drop_last = False  # whether an epoch's last, smaller batch is skipped (data-parallel runs need equal shares)

    def steps_per_epoch(self) -> int:
        steps = (math.floor if self.drop_last else math.ceil)(self.train_size() / self.recipe.batch_size)
        return min(steps, self.options.max_steps_per_epoch or steps)

    def _train_epoch(self, progress, stop: StopRequests) -> None:
        epoch, done, batch = self.state["epoch"], self.state["batches_done"], self.recipe.batch_size
        steps = self.steps_per_epoch()
        order = epoch_order(self.train_size(), self.recipe.seed, epoch)[done * batch: steps * batch].tolist()
        task = progress.add_task("train", total=steps, completed=done, epoch=epoch + 1,
                                 epochs=self.recipe.epochs, stats="")
        partial = self.state["partial"]
        self.reset_sums(partial["loss"], partial["correct"])
        started = time.perf_counter()

        def flush() -> None:
            partial["loss"], partial["correct"] = self.read_sums()
            partial["seconds"] += time.perf_counter() - started

        batches: Iterator[Any] = iter(self.batches(order, epoch))
        try:
            while self.state["batches_done"] < steps:
                if self.should_stop(stop.requested is not None):
                    flush()
                    self.save(wait=True)
                    why = {"SIGINT": "interrupted", None: "stopped"}.get(stop.requested, stop.requested)
                    raise TrainingStopped(f"{why} at "
                                          f"epoch {epoch + 1}, step {self.state['batches_done']}; "
                                          f"resume with: netspec train --resume {shown(self.run.path)}")
                partial["seen"] += self.train_step(next(batches))
                if self.writes.failed:  # the last epoch's checkpoint could not be written: stop now
                    self.writes.wait()
                self.state["batches_done"] += 1
                self.state["global_step"] += 1
                done = self.state["batches_done"]
                stats = None
                if done % PROGRESS_EVERY == 0 or done == steps:
                    loss, correct = self.read_sums()
                    seen, elapsed = partial["seen"], partial["seconds"] + time.perf_counter() - started
                    stats = (f"loss {loss / seen:.4f}  acc {correct / (seen * self.positions):.3f}  "
                             f"{seen / elapsed:.0f} img/s")
                progress.update(task, advance=1, **({"stats": stats} if stats else {}))
            flush()
        except NonFiniteLoss as bad:
            raise RunError.single(
                f"the loss became {bad.value} at epoch {epoch + 1}, step {bad.step or self.state['batches_done'] + 1}; "
                f"{self._what_is_kept()}",
                hint="lower the learning rate (--lr) or check the data") from None
        progress.remove_task(task)

    def _what_is_kept(self) -> str:
        """What a stop on a broken loss leaves the user, as it is on disk now."""
        store = self.run.checkpoints
        try:
            kept = store.has("last") and bool(store.complete_folders())
        except UserError:  # a damaged list: promise nothing
            kept = False
        if kept:
            return f"the last good checkpoint in {shown(store.folder)} is kept"
        return "no checkpoint had been saved, so there is nothing to resume from"

    def _finish_epoch(self) -> dict[str, Any]:
        partial = self.state["partial"]
        val_loss, top1, top5 = self.evaluate()
        if not math.isfinite(val_loss):  # the last update broke the weights, though its loss was finite
            raise RunError.single(
                f"the validation loss became {val_loss} at the end of epoch {self.state['epoch'] + 1} (the weights "
                f"are no longer finite); nothing was saved; {self._what_is_kept()}",
                hint="lower the learning rate (--lr), or use a larger batch (batch norm over very few values is "
                     "unstable)")
        self.state["epoch"] += 1
        record = {
            "epoch": self.state["epoch"],
            "step": self.state["global_step"],
            "train_loss": partial["loss"] / max(partial["seen"], 1),
            "train_top1": partial["correct"] / max(partial["seen"] * self.positions, 1),
            "val_loss": val_loss, "val_top1": top1, "val_top5": top5, "lr": self.schedule.lr,
            "images_per_s": partial["seen"] / max(partial["seconds"], 1e-9),
            "seconds": partial["seconds"],
        }
        self.set_lr(self.schedule.after_epoch(self.state["epoch"], val_loss))
        improved = top1 > self.state["best_top1"]
        self.state.update(batches_done=0, partial=fresh_partial(), schedule=self.schedule.state_dict(),
                          best_top1=max(top1, self.state["best_top1"]))
        self.run.append_metrics(record)
        self.save(("last", "best") if improved else ("last",))
        return record


def outputs_probabilities(net: CheckedNet) -> bool:
    """Whether the spec's output is a softmax (the loss then takes log-probabilities, not logits)."""
    from netspec.layers import LAYER_REGISTRY

    last = net.layer(net.output_names[0]).layer
    activation = getattr(last, "activation", None)
    return last.outputs_probabilities or activation is not None and LAYER_REGISTRY[activation].outputs_probabilities


def top_k_hits(outputs, labels, k: int) -> tuple[int, int]:
    """(top-1 hits, top-k hits) of a batch of scores (N, classes) against integer labels, in NumPy."""
    import numpy as np

    best = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
    return int((best[:, 0] == labels).sum()), int((best == labels[:, None]).any(axis=1).sum())


def epoch_line(record: dict[str, Any], epochs: int, classes: int) -> str:
    # with five classes or fewer every label is among the top five: top-5 would always read 1.000
    top5 = f" top-5 {record['val_top5']:.3f}" if classes > 5 else ""
    rate = record["images_per_s"]  # a large network on the CPU: 0.44 img/s, not 0
    shown_rate = f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"
    return (f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_top1']:.3f}  "
            f"val loss {record['val_loss']:.4f} top-1 {record['val_top1']:.3f}{top5}  "
            f"lr {record['lr']:.2g}  {shown_rate} img/s")

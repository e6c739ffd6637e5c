"""The torch training loop: the spec's recipe, per-epoch metrics, atomic checkpoints, exact resume
(mid-epoch too), Ctrl-C that saves, and a stop on a non-finite loss that keeps the last good
checkpoint.

Exact resume: each epoch's sample order comes from a generator seeded by (seed, epoch), and a
checkpoint stores how many batches of the epoch are done plus every RNG state, so a resumed run
draws the same batches, crops and dropout masks as an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from netspec.check import CheckedNet
from netspec.errors import SpecError
from netspec.fileio import atomic_path
from netspec.train import TrainingStopped, TrainOptions
from netspec.train.rundir import RunDir
from netspec_torch.data import load_datasets

PROGRESS_EVERY = 10  # steps between progress-bar refreshes (each reads the running sums back)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError.single(f"--device {requested}: no CUDA GPU is available here", hint="use --device cpu")
    return torch.device(requested)


def make_optimizer(model: torch.nn.Module, recipe) -> torch.optim.Optimizer:
    opt = recipe.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum,
                               weight_decay=opt.weight_decay, nesterov=opt.nesterov and opt.momentum > 0)
    cls = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
    return cls(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)


def make_scheduler(optimizer, recipe):
    schedule = recipe.schedule
    if schedule.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=schedule.step_size, gamma=schedule.factor)
    if schedule.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs, eta_min=schedule.min_lr)
    if schedule.name == "plateau":  # the paper's "divide by 10 when the validation error stops improving"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=schedule.factor,
                                                          patience=schedule.patience, min_lr=schedule.min_lr)
    return None


def outputs_probabilities(net: CheckedNet) -> bool:
    last = net.layers[-1].layer
    return last.kind == "softmax" or getattr(last, "activation", None) == "softmax"


def loss_fn(net: CheckedNet, smoothing: float):
    """Cross-entropy on logits, or on log-probabilities when the spec ends in a softmax."""
    if not outputs_probabilities(net):
        return lambda out, y: F.cross_entropy(out, y, label_smoothing=smoothing)

    def on_probabilities(out, y):
        log_p = torch.log(out.clamp_min(1e-12))
        nll = F.nll_loss(log_p, y)
        return nll if not smoothing else (1 - smoothing) * nll - smoothing * log_p.mean(dim=1).mean()

    return on_probabilities


def _epoch_order(size: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class TorchTrainer:
    def __init__(self, backend, net: CheckedNet, options: TrainOptions, run: RunDir, console=None):
        self.backend, self.net, self.options, self.run, self.console = backend, net, options, run, console
        self.recipe = net.spec.training
        self.device = pick_device(options.device)
        torch.manual_seed(self.recipe.seed)
        self.model = backend.load(net).to(self.device)
        self.optimizer = make_optimizer(self.model, self.recipe)
        self.scheduler = make_scheduler(self.optimizer, self.recipe)
        self.criterion = loss_fn(net, self.recipe.label_smoothing)
        self.data = load_datasets(net, net.spec.data, seed=self.recipe.seed)
        self.state: dict[str, Any] = {"epoch": 0, "batches_done": 0, "global_step": 0, "best_top1": -1.0,
                                      "partial": {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}}

    # --- checkpoints -------------------------------------------------------------------------------

    def save(self, tag: str = "last", rng_cpu: torch.Tensor | None = None) -> None:
        from safetensors.torch import save_file

        weights = self.run.checkpoint_path(tag, ".safetensors")
        with atomic_path(weights) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}, tmp,
                      metadata={"spec": self.net.spec.name, "layout": "torch"})
        state = {
            **{k: v for k, v in self.state.items() if k != "partial"},
            "partial": dict(self.state["partial"]),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "rng_cpu": torch.get_rng_state() if rng_cpu is None else rng_cpu,
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "weights_sha256": _sha256(weights),
        }
        with atomic_path(self.run.checkpoint_path(tag, ".state.pt")) as tmp:
            torch.save(state, tmp)

    def restore(self, tag: str = "last") -> None:
        from netspec_torch.weights import apply_state_dict, read_state_dict

        weights = self.run.checkpoint_path(tag, ".safetensors")
        state_path = self.run.checkpoint_path(tag, ".state.pt")
        if not weights.is_file() or not state_path.is_file():
            raise SpecError.single(f"no checkpoint to resume in {self.run.path}",
                                   hint="the run stopped before its first checkpoint; start it again")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("weights_sha256") != _sha256(weights):
            raise SpecError.single(f"the checkpoint in {weights.parent} is inconsistent (weights and state differ)",
                                   hint="resume from checkpoints/best.* or start again")
        apply_state_dict(self.model, read_state_dict(weights), str(weights))
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.state = {k: state[k] for k in ("epoch", "batches_done", "global_step", "best_top1", "partial")}
        self.run.truncate_metrics(self.state["epoch"])

    # --- the loop ----------------------------------------------------------------------------------

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def fit(self) -> list[dict[str, Any]]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        epochs, batch = self.recipe.epochs, self.recipe.batch_size
        progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[stats]}"),
                            TimeRemainingColumn(), console=self.console, disable=not self.options.progress,
                            transient=True)
        with progress:
            while self.state["epoch"] < epochs:
                self._train_epoch(progress, batch)
                record = self._finish_epoch()
                if self.console is not None:
                    self.console.print(_epoch_line(record, epochs))
        return self.run.read_metrics()

    def _train_epoch(self, progress, batch: int) -> None:
        epoch, done = self.state["epoch"], self.state["batches_done"]
        order = _epoch_order(len(self.data.train), self.recipe.seed, epoch)
        steps = math.ceil(len(order) / batch)
        if self.options.max_steps_per_epoch:
            steps = min(steps, self.options.max_steps_per_epoch)
        # its own generator, so creating the loader draws nothing from the global RNG that resume restores
        loader = DataLoader(self.data.train, batch_size=batch, sampler=order[done * batch: steps * batch],
                            num_workers=self.options.workers,
                            generator=torch.Generator().manual_seed(self.recipe.seed + epoch))
        task = progress.add_task("train", total=steps, completed=done, epoch=epoch + 1,
                                 epochs=self.recipe.epochs, stats="")
        partial = self.state["partial"]
        # Running sums stay on the device: reading them back every step would stall a GPU. They
        # are read at each progress refresh, on interruption and at the end of the epoch.
        loss_sum = torch.tensor(partial["loss"], dtype=torch.float64, device=self.device)
        correct = torch.tensor(partial["correct"], dtype=torch.int64, device=self.device)

        def flush() -> None:
            partial["loss"], partial["correct"] = loss_sum.item(), int(correct.item())

        self.model.train()
        started = time.perf_counter()
        batches = iter(loader)
        rng_before_batch = torch.get_rng_state()
        try:
            while True:
                # the RNG state before a batch's crops and dropout: what an interrupted batch resumes from
                rng_before_batch = torch.get_rng_state()
                try:
                    x, y = next(batches)
                except StopIteration:
                    break
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                out = self.model(x)
                loss = self.criterion(out, y)
                # the one read-back per step: it names the exact step where the loss went bad
                if not torch.isfinite(loss):
                    raise SpecError.single(
                        f"the loss became {loss.item()} at epoch {epoch + 1}, step {self.state['batches_done'] + 1}; "
                        f"the last good checkpoint in {self.run.path / 'checkpoints'} is kept",
                        hint="lower the learning rate (--lr) or check the data")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                loss_sum += loss.detach().double() * len(y)
                correct += (out.argmax(1) == y).sum()
                partial["seen"] += len(y)
                self.state["batches_done"] += 1
                self.state["global_step"] += 1
                stats = None
                if self.state["batches_done"] % PROGRESS_EVERY == 0 or self.state["batches_done"] == steps:
                    flush()
                    seen = partial["seen"]
                    elapsed = partial["seconds"] + time.perf_counter() - started
                    stats = (f"loss {partial['loss'] / seen:.4f}  acc {partial['correct'] / seen:.3f}  "
                             f"{seen / elapsed:.0f} img/s")
                progress.update(task, advance=1, **({"stats": stats} if stats else {}))
        except KeyboardInterrupt:
            flush()
            partial["seconds"] += time.perf_counter() - started
            self.save("last", rng_cpu=rng_before_batch)
            raise TrainingStopped(f"interrupted at epoch {epoch + 1}, step {self.state['batches_done']}; "
                                  f"resume with: netspec train --resume {self.run.path}") from None
        flush()
        partial["seconds"] += time.perf_counter() - started
        progress.remove_task(task)

    def _finish_epoch(self) -> dict[str, Any]:
        partial = self.state["partial"]
        val_loss, top1, top5 = self.evaluate()
        lr = self.lr()
        self.state["epoch"] += 1
        record = {
            "epoch": self.state["epoch"],
            "step": self.state["global_step"],
            "train_loss": partial["loss"] / max(partial["seen"], 1),
            "train_top1": partial["correct"] / max(partial["seen"], 1),
            "val_loss": val_loss, "val_top1": top1, "val_top5": top5, "lr": lr,
            "images_per_s": partial["seen"] / max(partial["seconds"], 1e-9),
            "seconds": partial["seconds"],
        }
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        elif self.scheduler is not None:
            self.scheduler.step()
        self.state["batches_done"] = 0
        self.state["partial"] = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.run.append_metrics(record)
        self.save("last")
        if top1 > self.state["best_top1"]:
            self.state["best_top1"] = top1
            self.save("best")
        return record

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float, float]:
        self.model.eval()
        loader = DataLoader(self.data.val, batch_size=self.recipe.batch_size, num_workers=self.options.workers)
        total, loss_sum, top1, top5 = 0, 0.0, 0, 0
        k = min(5, self.net.output_shape[0])
        for x, y in loader:
            x, y = x.to(self.device), y.to(self.device)
            out = self.model(x)
            loss_sum += self.criterion(out, y).item() * len(y)
            best = out.topk(k, dim=1).indices
            top1 += int((best[:, 0] == y).sum())
            top5 += int((best == y[:, None]).any(dim=1).sum())
            total += len(y)
        self.model.train()
        return loss_sum / total, top1 / total, top5 / total


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    return (f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_top1']:.3f}  "
            f"val loss {record['val_loss']:.4f} top-1 {record['val_top1']:.3f} top-5 {record['val_top5']:.3f}  "
            f"lr {record['lr']:.2g}  {record['images_per_s']:.0f} img/s")

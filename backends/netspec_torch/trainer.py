"""The torch side of the shared training loop (netspec.train.loop): the model built from the
spec's generated source, optimizers, the loss, batches through a DataLoader, checkpoints as
safetensors weights plus a ``.state.pt`` (optimizer, RNG, loop state; read back with
``weights_only=True``), and evaluation.

The step's running sums stay on the device: the one read-back per step is the finiteness check
that names the failing step. On the CPU a resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from netspec.check import CheckedNet
from netspec.errors import SpecError
from netspec.fileio import atomic_path, sha256_file
from netspec.train import TrainOptions
from netspec.train.loop import EpochLoop, NonFiniteLoss, outputs_probabilities
from netspec.train.rundir import RunDir
from netspec_torch.data import load_datasets


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


def loss_fn(net: CheckedNet, smoothing: float):
    """Cross-entropy on logits, or on log-probabilities when the spec ends in a softmax."""
    if not outputs_probabilities(net):
        return lambda out, y: F.cross_entropy(out, y, label_smoothing=smoothing)

    def on_probabilities(out, y):
        log_p = torch.log(out.clamp_min(1e-12))
        nll = F.nll_loss(log_p, y)
        return nll if not smoothing else (1 - smoothing) * nll - smoothing * log_p.mean(dim=1).mean()

    return on_probabilities


class TorchTrainer(EpochLoop):
    def __init__(self, backend, net: CheckedNet, options: TrainOptions, run: RunDir, console=None):
        super().__init__(net, options, run, console)
        self.device = pick_device(options.device)
        torch.manual_seed(self.recipe.seed)
        self.model = backend.load(net).to(self.device)
        self.optimizer = make_optimizer(self.model, self.recipe)
        self.criterion = loss_fn(net, self.recipe.label_smoothing)
        self.data = load_datasets(net, net.spec.data, seed=self.recipe.seed)
        self.loss_sum = self.correct = None

    # --- steps ---------------------------------------------------------------------------------

    def train_size(self) -> int:
        return len(self.data.train)

    def batches(self, indices: list[int], epoch: int):
        # its own generator, so the loader draws nothing from the global RNG that resume restores
        return DataLoader(self.data.train, batch_size=self.recipe.batch_size, sampler=indices,
                          num_workers=self.options.workers,
                          generator=torch.Generator().manual_seed(self.recipe.seed + epoch))

    def reset_sums(self, loss: float, correct: int) -> None:
        # kept on the device: reading them back every step would stall a GPU
        self.loss_sum = torch.tensor(loss, dtype=torch.float64, device=self.device)
        self.correct = torch.tensor(correct, dtype=torch.int64, device=self.device)
        self.model.train()

    def read_sums(self) -> tuple[float, int]:
        return self.loss_sum.item(), int(self.correct.item())

    def train_step(self, batch) -> int:
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        out = self.model(x)
        loss = self.criterion(out, y)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(loss.item())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach().double() * len(y)
        self.correct += (out.argmax(1) == y).sum()
        return len(y)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

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

    # --- checkpoints -------------------------------------------------------------------------------

    def save(self, tag: str) -> None:
        from safetensors.torch import save_file

        weights = self.run.checkpoint_path(tag, ".safetensors")
        with atomic_path(weights) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}, tmp,
                      metadata={"spec": self.net.spec.name, "layout": "torch"})
        state = {
            "loop": self.state,
            "optimizer": self.optimizer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "weights_sha256": sha256_file(weights),
        }
        with atomic_path(self.run.checkpoint_path(tag, ".state.pt")) as tmp:
            torch.save(state, tmp)

    def load(self, tag: str) -> dict[str, Any]:
        from netspec_torch.weights import apply_state_dict, read_state_dict

        weights = self.run.checkpoint_path(tag, ".safetensors")
        state_path = self.run.checkpoint_path(tag, ".state.pt")
        if not weights.is_file() or not state_path.is_file():
            raise SpecError.single(f"no checkpoint to resume in {self.run.path}",
                                   hint="the run stopped before its first checkpoint; start it again")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("weights_sha256") != sha256_file(weights):
            raise SpecError.single(f"the checkpoint in {weights.parent} is inconsistent (weights and state differ)",
                                   hint="resume from checkpoints/best.* or start again")
        apply_state_dict(self.model, read_state_dict(weights), str(weights))
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        return state["loop"]

"""The torch side of the shared training loop (netspec.train.loop): the model built from the
spec's generated source, optimizers, the loss, batches, checkpoints as safetensors weights plus a
``.state.pt`` (optimizer, RNG, loop state; read back with ``weights_only=True``), evaluation.

On a CUDA device the fast path is on by default (each part can be switched off): the uint8
dataset resident on the GPU and augmented there, channels-last, bfloat16 autocast, torch.compile,
a fused optimizer, and no host sync per step (running sums stay on the device; the loss's
finiteness is read back every PROGRESS_EVERY steps and still names the first bad step). On the
CPU the parts that pay off there are on (benchmarks/results/cpu_fast_path*.json): a fused
optimizer, bfloat16 autocast where the CPU computes in bfloat16 natively (AVX512-BF16 or AMX),
channels-last where batch norm runs in bf16, and dropout masks drawn in bulk
(netspec_torch.dropout); torch.compile gained nothing measurable on top
and costs a warm-up, and the torchvision input pipeline already keeps up. Either way a resumed
run reproduces an uninterrupted one exactly.
Under torchrun the model is wrapped in DistributedDataParallel (netspec_torch.distributed).
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from netspec.analysis.checker import CheckedNet
from netspec.errors import RunError, SetupError
from netspec.files.state_files import weights_budget
from netspec.train import FAST_PATH_PARTS, TrainOptions
from netspec.train.checkpoints import damaged_checkpoint
from netspec.train.hardware import cpu_has_native_bf16
from netspec.train.loop import PROGRESS_EVERY, EpochLoop, NonFiniteLoss, outputs_probabilities
from netspec.train.memory import keep_freed_memory
from netspec.train.rundir import RunDir
from netspec.train.safetensors_stream import write_safetensors
from netspec_torch.data import ArrayImages, load_datasets
from netspec_torch.device_data import DeviceBatches
from netspec_torch.distributed import World, check_batch
from netspec_torch.dropout import use_uniform_masks


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise SetupError.single(f"--device {requested}: no CUDA GPU is available here", hint="use --device cpu")
    return torch.device(requested)


def quiet_cpu_compile(device: torch.device) -> None:
    """torch.compile on the CPU imports torch.utils.cpp_extension, which warns that it found no
    CUDA runtime: true, and beside the point of a CPU run."""
    if device.type != "cuda":
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def make_optimizer(model: torch.nn.Module, recipe, *, fused: bool = False) -> torch.optim.Optimizer:
    """The recipe's optimizer; ``fused`` (CUDA) updates all parameters in one kernel."""
    opt = recipe.optimizer
    extra: dict[str, Any] = {"fused": True} if fused else {}
    if opt.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay,
                               nesterov=opt.nesterov and opt.momentum > 0, **extra)
    cls = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
    return cls(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay, **extra)


@dataclass(frozen=True)
class FastPath:
    """Which parts of the fast path are on, and why: on a CUDA device all of them, on the CPU those
    that pay off there (a fused optimizer; bfloat16 where the CPU has it natively). Each part the
    user switches on or off is as they said."""

    device_data: bool
    channels_last: bool
    bf16: bool
    compile: bool
    uniform_dropout: bool  # dropout masks from torch.rand, not bernoulli_ (netspec_torch.dropout)
    fused_optimizer: bool
    check_every: int  # steps between loss finiteness read-backs (1: every step)
    reasons: tuple[str, ...] = ()

    @classmethod
    def resolve(cls, options: TrainOptions, device: torch.device, net: CheckedNet) -> FastPath:
        cuda = device.type == "cuda"
        defaults = dict.fromkeys(FAST_PATH_PARTS, cuda)
        reasons = []
        if not cuda:
            defaults["bf16"] = cpu_has_native_bf16()
            if options.bf16 is None:
                reasons.append("bf16: the CPU has bfloat16" if defaults["bf16"] else
                               "no bf16: the CPU has no native bfloat16")
            # measured (benchmarks/results/cpu_fast_path*.json): with batch norm, bf16 steps run 7%
            # faster channels-last (resnet18 at 64x64); without, it gains nothing (alexnet-digits);
            # torch.compile made neither faster, for a warm-up of up to 22 s
            batch_norm = any(checked.layer.batch_statistics for checked in net.layers)
            bf16 = defaults["bf16"] if options.bf16 is None else options.bf16
            defaults["channels_last"] = bf16 and batch_norm
            if options.channels_last is None and defaults["channels_last"]:
                reasons.append("channels_last: batch norm in bf16")
        # on a GPU bernoulli_ is fast; a net without dropout has nothing to swap
        defaults["uniform_dropout"] = not cuda and any(checked.layer.random_in_training for checked in net.layers)
        if options.uniform_dropout is None and defaults["uniform_dropout"]:
            reasons.append("uniform_dropout: bernoulli_ is serial on the CPU")
        parts = {name: defaults[name] if getattr(options, name) is None else getattr(options, name)
                 for name in FAST_PATH_PARTS}
        return cls(**parts, fused_optimizer=True, check_every=PROGRESS_EVERY if cuda else 1, reasons=tuple(reasons))

    def describe(self) -> str:
        on = [name for name in (*FAST_PATH_PARTS, "fused_optimizer") if getattr(self, name)]
        return (", ".join(on) or "off") + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def host_copy(value):
    """A copy of nested dicts, lists and tensors, its tensors in host memory: a checkpoint's
    snapshot, which the steps that run while it is written do not change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: host_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(host_copy(item) for item in value)
    return value


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
    backend_name = "torch"
    state_file = "state.pt"
    # the epoch's running sums, kept on the device: reset_sums sets them before the first step
    loss_sum: torch.Tensor
    correct: torch.Tensor
    first_bad: torch.Tensor

    def __init__(self, backend, net: CheckedNet, options: TrainOptions, run: RunDir, console=None,
                 world: World | None = None):
        super().__init__(net, options, run, console)
        self.world = world or World()
        check_batch(self.world, self.recipe.batch_size)
        self.drop_last = self.world.active  # every process must take the same number of steps
        self.device = self.world.device(pick_device(options.device))
        self.fast = FastPath.resolve(options, self.device, net)
        self.write_in_background = self.device.type != "cpu"  # the host's cores are free meanwhile
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults for every step's gradients (netspec.train.memory)
        torch.manual_seed(self.recipe.seed)  # the same initial weights in every process
        self.model = backend.load(net).to(self.device)
        if self.fast.uniform_dropout:
            use_uniform_masks(self.model)
        if self.fast.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.model, self.recipe, fused=self.fast.fused_optimizer)
        self.criterion = loss_fn(net, self.recipe.label_smoothing)
        self.data = load_datasets(net, net.spec.data, seed=self.recipe.seed)
        self.device_batches = self._device_batches() if self.fast.device_data else None
        if self.device_batches is None:
            self._prepare_data()
        self.forward = self._forward_model()
        torch.manual_seed(self.recipe.seed + self.world.rank)  # each process its own dropout masks

    def describe(self) -> str:
        processes = f"{self.world.size} process{'es' if self.world.size != 1 else ''}"
        return f"device {self.device}, {processes}, fast path: {self.fast.describe()}"

    def _forward_model(self):
        model = self.model
        if self.world.active:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None)
        if not self.fast.compile:
            return model
        quiet_cpu_compile(self.device)
        return torch.compile(model)

    def _prepare_data(self) -> None:
        """In-memory images whose transform is deterministic are transformed once, not each epoch
        (always the validation set; the training set without random crops or flips)."""
        for dataset in (self.data.train, self.data.val):
            if isinstance(dataset, ArrayImages):
                dataset.prepare()

    def _device_batches(self) -> DeviceBatches | None:
        """The dataset on the device when it is held in memory (not for image folders)."""
        train = self.data.train
        if not isinstance(train, ArrayImages):
            return None
        return DeviceBatches(train.images, train.labels, self.net, self.net.spec.data, train=True,
                             device=self.device, seed=self.recipe.seed, channels_last=self.fast.channels_last)

    # --- steps ---------------------------------------------------------------------------------

    def train_size(self) -> int:
        return len(self.data.train)

    def batches(self, indices: list[int], epoch: int):
        indices, batch = self.world.shard(indices, self.recipe.batch_size)
        if self.device_batches is not None:
            return self.device_batches.batches(indices, batch, epoch=epoch, first_batch=self.state["batches_done"])
        if isinstance(self.data.train, ArrayImages) and self.data.train.prepared is not None:
            return self.data.train.batches(indices, batch)
        # its own generator, so the loader draws nothing from the global RNG that resume restores
        return DataLoader(self.data.train, batch_size=batch, sampler=indices, num_workers=self.options.workers,
                          pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(self.recipe.seed + epoch))

    def reset_sums(self, loss: float, correct: int) -> None:
        # kept on the device: reading them back every step would stall a GPU
        if not self.world.is_main:  # the epoch's totals so far are counted once, by rank 0
            loss, correct = 0.0, 0
        self.loss_sum = torch.tensor(loss, dtype=torch.float64, device=self.device)
        self.correct = torch.tensor(correct, dtype=torch.int64, device=self.device)
        self.first_bad = torch.tensor(-1, dtype=torch.int64, device=self.device)
        self.model.train()

    def read_sums(self) -> tuple[float, int]:
        first_bad = int(self.first_bad.item())
        if first_bad >= 0:
            raise NonFiniteLoss(float("nan"), step=first_bad)
        loss, correct = self.world.sum(self.loss_sum.item(), float(self.correct.item()))
        return loss, round(correct)

    def train_step(self, batch) -> int:
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        if self.fast.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.fast.bf16):
            out = self.forward(x)
            loss = self.criterion(out.float(), y)
        if self.fast.check_every == 1:
            if not torch.isfinite(loss):
                raise NonFiniteLoss(loss.item())
        else:  # remember the first bad step on the device; read_sums raises it without a per-step sync
            step = self.state["batches_done"] + 1
            self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss), step, self.first_bad)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach().double() * len(y)
        self.correct += (out.argmax(1) == y).sum()
        return len(y) * self.world.size

    def should_stop(self, requested: bool) -> bool:
        """With several processes, all stop at the same step: they compare notes every
        PROGRESS_EVERY steps (a Ctrl-C reaches every process anyway)."""
        if not self.world.active:
            return requested
        if self.state["batches_done"] % PROGRESS_EVERY:
            return False
        return self.world.sum(float(requested))[0] > 0

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float, float]:
        self.model.eval()
        val = self.data.val
        share = range(self.world.rank, len(val), self.world.size)  # each process its share; the sums are added up
        if isinstance(val, ArrayImages) and val.prepared is not None:
            loader = val.batches(list(share), self.recipe.batch_size)
        else:
            # its own generator: evaluating draws nothing from the RNG that the dropout masks use
            loader = DataLoader(torch.utils.data.Subset(val, share) if self.world.active else val,
                                batch_size=self.recipe.batch_size, num_workers=self.options.workers,
                                pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(0))
        total: float  # counts, summed across processes as floats at the end
        top1: float
        top5: float
        total, loss_sum, top1, top5 = 0, 0.0, 0, 0
        k = min(5, self.net.output_shape[0])
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.fast.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.fast.bf16):
                out = self.model(x).float()
            if out.ndim > 2:  # a class per pixel: each pixel counts as a sample
                out, y = out.movedim(1, -1).reshape(-1, out.shape[1]), y.reshape(-1)
            loss_sum += self.criterion(out, y).item() * len(y)
            best = out.topk(k, dim=1).indices
            top1 += int((best[:, 0] == y).sum())
            top5 += int((best == y[:, None]).any(dim=1).sum())
            total += len(y)
        self.model.train()
        total, loss_sum, top1, top5 = self.world.sum(total, loss_sum, top1, top5)
        return loss_sum / total, top1 / total, top5 / total

    # --- checkpoints -------------------------------------------------------------------------------

    def save(self, tags: tuple[str, ...] = ("last",), *, wait: bool = False) -> None:
        """Rank 0 writes; with several processes, each one's RNG state is kept."""
        self._rng = self.world.gather({"cpu": torch.get_rng_state(),
                                       "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []})
        if self.world.is_main:
            super().save(tags, wait=wait)
        self.world.barrier()

    def checkpoint_files(self, *, snapshot: bool) -> dict[str, tuple[str, Any]]:
        weights, optimizer = self.model.state_dict(), self.optimizer.state_dict()
        if snapshot:
            weights, optimizer = host_copy(weights), host_copy(optimizer)
        # streamed to the file as NumPy views of the tensors (the model's weights are float32 and
        # its buffers float32 or int64, all of which NumPy holds), not first assembled into one
        weights = {k: v.detach().cpu().contiguous().numpy() for k, v in weights.items()}
        state = {"loop": host_copy(self.state), "optimizer": optimizer, "rng": self._rng}
        return {"weights": ("weights.safetensors", lambda handle: write_safetensors(
                    handle, weights, {"spec": self.net.spec.name, "layout": "torch"})),
                "state": (self.state_file, lambda handle: torch.save(state, handle))}

    def load_checkpoint(self, files: dict[str, Path]) -> dict[str, Any]:
        from netspec_torch.weights import apply_state_dict, read_state_dict

        state_path = files["state"]
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            raise damaged_checkpoint(state_path, str(exc).splitlines()[0]) from None
        if not isinstance(state, dict) or not {"loop", "optimizer", "rng"} <= set(state):
            raise damaged_checkpoint(state_path, "it is not a netspec torch training state")
        apply_state_dict(self.model, read_state_dict(files["weights"], budget=weights_budget(self.net)),
                         str(files["weights"]))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise RunError.single(f"the checkpoint in {state_path.parent} was written for another model or "
                                  f"optimizer: {exc}", hint="resume with the spec and recipe the run started with"
                                  ) from None
        rng = state["rng"]
        if len(rng) == self.world.size:  # with another process count the dropout masks start afresh
            mine = rng[self.world.rank]
            torch.set_rng_state(mine["cpu"])
            if mine["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(mine["cuda"])
        return state["loop"]

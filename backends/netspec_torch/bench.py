"""Training throughput on the torch backend, three loops over the same generated model:

- ``netspec``: our trainer's own step, end to end from a uint8 dataset (synthetic images at the
  spec's input size) through the spec's augmentation, with whatever fast path the device gets;
- ``eager-fp32``: the plain loop a tutorial writes, on a batch already on the device;
- ``compiled-bf16``: the hand-tuned loop (channels-last, bf16 autocast, torch.compile, a fused
  optimizer), on a batch already on the device.

All three train with the spec's recipe: its optimizer, learning rate and loss (the reference loops
with their own best settings on top), so the comparison is like with like.

Each loop runs ``warmup`` untimed steps (compilation included, reported as warm-up time), then
``trials`` rounds of ``steps`` timed steps, each between two device synchronizations; the median
round is reported. On the CPU the loops take their rounds in turn (its speed drifts over minutes,
and so each loop meets the drift alike); on a GPU one loop runs after the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from netspec.analysis.checker import CheckedNet
from netspec.layers.base import IDS, layout_of
from netspec.train.bench import (
    BenchRow,
    BenchSettings,
    LoopUnavailable,
    Measuring,
    repeated,
    time_loops,
    trainer_on_synthetic_data,
)
from netspec.train.hardware import cpu_label
from netspec.train.loop import NonFiniteLoss
from netspec.train.sources import per_pixel, vocabulary
from netspec_torch.trainer import TorchTrainer, loss_fn, make_optimizer, pick_device, quiet_cpu_compile


def bench(backend, net: CheckedNet, settings: BenchSettings) -> tuple[list[BenchRow], str, dict[str, str]]:
    device = pick_device(settings.device)
    quiet_cpu_compile(device)
    loops = {"netspec": _netspec_loop, "eager-fp32": _eager_loop, "compiled-bf16": _compiled_loop}
    cuda = device.type == "cuda"
    how = Measuring(sync=torch.cuda.synchronize if cuda else (lambda: None), in_turn=not cuda,
                    failures=(torch.OutOfMemoryError, NonFiniteLoss, LoopUnavailable),
                    reset_memory=(lambda: torch.cuda.reset_peak_memory_stats(device)) if cuda else (lambda: None),
                    peak_memory=(lambda: torch.cuda.max_memory_allocated(device) / 2**30) if cuda else (lambda: None))
    rows = []
    for batch in settings.batch_sizes:
        setups = [(name, loops[name](backend, net, batch, settings, device)) for name in settings.loops]
        rows += [row.with_mfu(net.totals.macs, settings.peak_tflops, cuda)
                 for row in time_loops(setups, batch, settings, how)]
        _release(device)
    name = torch.cuda.get_device_name(device) if cuda else cpu_label(torch.get_num_threads())
    import torchvision

    return rows, name, {"torch": torch.__version__, "torchvision": torchvision.__version__}


def _release(device: torch.device) -> None:
    import gc

    torch._dynamo.reset()  # compiled graphs of one model size must not pile up
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextmanager
def _netspec_loop(backend, net: CheckedNet, batch: int, settings: BenchSettings, device) -> Iterator[tuple]:
    with trainer_on_synthetic_data(TorchTrainer, backend, net, batch, settings) as (trainer, batches):
        yield repeated(lambda: trainer.train_step(next(batches))), f"fast path: {trainer.fast.describe()}"
        trainer.read_sums()  # raises if the loss went bad


def _reference_batch(net: CheckedNet, batch: int, device, channels_last: bool = False):
    """A random batch of the network's input (token ids for a network that takes them) and labels
    (one per pixel for a network that classifies every pixel)."""
    generator = torch.Generator(device=device).manual_seed(0)
    if layout_of(net.input_shape) is IDS:
        x = torch.randint(0, vocabulary(net), (batch, *net.input_shape), device=device, generator=generator)
    else:
        x = torch.randn(batch, *net.input_shape, device=device, generator=generator)
    labels = (batch, *net.output_shape[1:]) if per_pixel(net) else (batch,)
    y = torch.randint(0, net.output_shape[0], labels, device=device, generator=generator)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x), y


@contextmanager
def _eager_loop(backend, net: CheckedNet, batch: int, settings: BenchSettings, device) -> Iterator[tuple]:
    model = backend.load(net).to(device).train()
    optimizer = make_optimizer(model, net.spec.training)
    criterion = loss_fn(net, net.spec.training.label_smoothing)
    x, y = _reference_batch(net, batch, device)

    def step():
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    yield repeated(step), ""


@contextmanager
def _compiled_loop(backend, net: CheckedNet, batch: int, settings: BenchSettings, device) -> Iterator[tuple]:
    model = backend.load(net).to(device).to(memory_format=torch.channels_last).train()
    compiled = torch.compile(model)
    optimizer = make_optimizer(model, net.spec.training, fused=True)
    criterion = loss_fn(net, net.spec.training.label_smoothing)
    x, y = _reference_batch(net, batch, device, channels_last=True)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = criterion(compiled(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def run(steps: int) -> None:
        try:
            repeated(step)(steps)
        except RuntimeError as error:  # an op without a bfloat16 kernel here: the other loops still run
            raise LoopUnavailable(f"bfloat16 fails on {device.type} for this network "
                                  f"({str(error).splitlines()[0][:120]})") from None

    yield run, ""

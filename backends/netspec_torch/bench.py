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

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

import torch

from netspec.bench import BenchRow, BenchSettings, trainer_on_synthetic_data
from netspec.check import CheckedNet
from netspec.train.loop import NonFiniteLoss
from netspec_torch.trainer import TorchTrainer, loss_fn, make_optimizer, pick_device, quiet_cpu_compile


def bench(backend, net: CheckedNet, settings: BenchSettings) -> tuple[list[BenchRow], str, dict[str, str]]:
    device = pick_device(settings.device)
    quiet_cpu_compile(device)
    loops = {"netspec": _netspec_loop, "eager-fp32": _eager_loop, "compiled-bf16": _compiled_loop}
    rows = []
    for batch in settings.batch_sizes:
        setups = [(name, loops[name](backend, net, batch, settings, device)) for name in settings.loops]
        # a CPU's speed drifts by ±10% over minutes (other tenants, clocks): its loops take their
        # rounds in turn, so the drift falls on each alike; a GPU's loops run one after the other,
        # each with the memory to itself, so its peak memory is its own
        groups = [setups] if device.type == "cpu" else [[setup] for setup in setups]
        for group in groups:
            rows += [row.with_mfu(net.totals.macs, settings.peak_tflops, device.type == "cuda")
                     for row in _time(group, batch, settings, device)]
            _release(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{cpu_model()} ({torch.get_num_threads()} threads)"
    import torchvision

    return rows, name, {"torch": torch.__version__, "torchvision": torchvision.__version__}


def cpu_model() -> str:
    """The CPU's model name (Linux), or 'CPU'."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):  # noqa: SIM115 - read to the first match
            if line.startswith("model name"):
                return "CPU: " + " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return "CPU"


def _release(device: torch.device) -> None:
    import gc

    torch._dynamo.reset()  # compiled graphs of one model size must not pile up
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


Step = tuple[Callable[[], object], str]  # one training step, and a note on how it runs
Loop = AbstractContextManager[Step]


def _time(loops: list[tuple[str, Loop]], batch: int, settings: BenchSettings, device: torch.device) -> list[BenchRow]:
    """Set up each loop and run its warm-up steps, then ``trials`` rounds of ``steps`` timed steps
    per loop, the loops taking their rounds in turn; the median round of each is reported."""
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows: list[BenchRow] = []
    with ExitStack() as stack:
        ready = []
        for name, loop in loops:
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            try:
                step, note = stack.enter_context(loop)
                started = time.perf_counter()
                for _ in range(settings.warmup):
                    step()
                sync()
            except (torch.OutOfMemoryError, NonFiniteLoss) as failure:
                rows.append(_failed(name, batch, failure))
                continue
            ready.append((name, step, note, time.perf_counter() - started, []))
        for _ in range(settings.trials):
            for entry in list(ready):
                name, step, _, _, rounds = entry
                started = time.perf_counter()
                try:
                    for _ in range(settings.steps):
                        step()
                    sync()
                except (torch.OutOfMemoryError, NonFiniteLoss) as failure:
                    rows.append(_failed(name, batch, failure))
                    ready.remove(entry)
                    continue
                rounds.append(time.perf_counter() - started)
        memory = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
        for name, _, note, warmup, rounds in ready:
            elapsed = statistics.median(rounds)
            rows.append(BenchRow(name, batch, batch * settings.steps / elapsed, 1000 * elapsed / settings.steps,
                                 warmup, memory, note=note))
    order = [name for name, _ in loops]
    return sorted(rows, key=lambda row: order.index(row.loop))


def _failed(name: str, batch: int, failure: Exception) -> BenchRow:
    note = "out of memory" if isinstance(failure, torch.OutOfMemoryError) else \
        f"the loss became {failure}: try a larger batch or a lower learning rate"
    return BenchRow(name, batch, 0.0, 0.0, 0.0, None, note=note)


@contextmanager
def _netspec_loop(backend, net: CheckedNet, batch: int, settings: BenchSettings, device) -> Iterator[Step]:
    with trainer_on_synthetic_data(TorchTrainer, backend, net, batch, settings) as (trainer, batches):
        yield (lambda: trainer.train_step(next(batches))), f"fast path: {trainer.fast.describe()}"
        trainer.read_sums()  # raises if the loss went bad


def _reference_batch(net: CheckedNet, batch: int, device, channels_last: bool = False):
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, *net.input_shape, device=device, generator=generator)
    y = torch.randint(0, net.output_shape[0], (batch,), device=device, generator=generator)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


@contextmanager
def _eager_loop(backend, net: CheckedNet, batch: int, settings: BenchSettings, device) -> Iterator[Step]:
    model = backend.load(net).to(device).train()
    optimizer = make_optimizer(model, net.spec.training)
    criterion = loss_fn(net, net.spec.training.label_smoothing)
    x, y = _reference_batch(net, batch, device)

    def step():
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    yield step, ""


@contextmanager
def _compiled_loop(backend, net: CheckedNet, batch: int, settings: BenchSettings, device) -> Iterator[Step]:
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

    yield step, ""

"""`netspec bench`: training throughput of a spec's model, framework-free parts (the result rows,
MFU, the table and the JSON file). The backends time the loops (``Backend.bench``).

MFU (model FLOPs utilisation) counts 6 FLOPs per multiply-accumulate per image (2 for a MAC, times
3 for the forward pass and the two backward products), with the MACs from the checker, over the
accelerator's peak (800 TFLOP/s: an H100's dense bf16 figure, by default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_PEAK_TFLOPS = 800.0
FLOPS_PER_MAC_TRAINING = 6


@dataclass
class BenchSettings:
    batch_sizes: list[int]
    steps: int = 100
    warmup: int = 5
    trials: int = 3  # timed rounds of `steps`; the median round is reported
    device: str = "auto"
    peak_tflops: float = DEFAULT_PEAK_TFLOPS
    loops: list[str] = field(default_factory=lambda: ["netspec"])  # the backend's bench_loops to time


@dataclass
class BenchRow:
    loop: str
    batch_size: int
    images_per_s: float
    ms_per_step: float
    warmup_s: float  # the untimed first steps: compilation, autotuning, allocator warm-up
    peak_memory_gib: float | None  # on a GPU
    mfu: float | None = None
    note: str = ""

    def with_mfu(self, macs_per_image: int, peak_tflops: float, on_gpu: bool) -> BenchRow:
        if on_gpu:
            self.mfu = FLOPS_PER_MAC_TRAINING * macs_per_image * self.images_per_s / (peak_tflops * 1e12)
        return self


def environment(device_name: str, versions: Mapping[str, str | None]) -> dict[str, Any]:
    import os
    import sys

    return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["netspec", *sys.argv[1:]]),
            "device": device_name, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "versions": {"python": platform.python_version(), **versions}}


def report(spec_name: str, macs: int, rows: list[BenchRow], env: dict[str, Any]) -> dict[str, Any]:
    return {"benchmark": "training throughput", "spec": spec_name, "macs_per_image": macs, **env,
            "rows": [asdict(row) for row in rows], "ratios": ratios(rows)}


def ratios(rows: list[BenchRow]) -> list[dict[str, Any]]:
    """netspec's trainer against the fastest reference loop, per batch size (where both ran)."""
    out = []
    for batch in dict.fromkeys(row.batch_size for row in rows):
        ours = [r for r in rows if r.batch_size == batch and r.loop == "netspec" and r.images_per_s > 0]
        references = [r for r in rows if r.batch_size == batch and r.loop != "netspec" and r.images_per_s > 0]
        if ours and references:
            best = max(references, key=lambda r: r.images_per_s)
            out.append({"batch_size": batch, "best_reference": best.loop,
                        "netspec_over_best_reference": ours[0].images_per_s / best.images_per_s})
    return out


def table(doc: dict[str, Any]):
    from rich.table import Table

    out = Table(title=f"{doc['spec']} on {doc['device']}", title_justify="left")
    for column in ("loop", "batch", "images/s", "ms/step", "MFU", "peak memory", "warm-up", "note"):
        out.add_column(column, justify="left" if column in ("loop", "note") else "right")
    for row in doc["rows"]:
        out.add_row(row["loop"], str(row["batch_size"]), f"{row['images_per_s']:,.0f}", f"{row['ms_per_step']:.1f}",
                    "-" if row["mfu"] is None else f"{row['mfu']:.1%}",
                    "-" if row["peak_memory_gib"] is None else f"{row['peak_memory_gib']:.1f} GiB",
                    f"{row['warmup_s']:.1f} s", row["note"])
    if doc.get("ratios"):
        out.caption = "netspec / fastest reference: " + ", ".join(
            f"{r['netspec_over_best_reference']:.2f} at batch {r['batch_size']} ({r['best_reference']})"
            for r in doc["ratios"])
        out.caption_justify = "left"
    return out


Steps = Callable[[int], object]  # runs n training steps of one loop, back to back
Loop = contextlib.AbstractContextManager[tuple[Steps, str]]  # sets a loop up; yields (its steps, a note)


def repeated(step: Callable[[], object]) -> Steps:
    """A loop's steps from its one step."""
    def run(steps: int) -> None:
        for _ in range(steps):
            step()

    return run


@dataclass
class Measuring:
    """How a backend's device is timed: ``sync`` waits for queued work; ``in_turn`` has the loops
    take their timed rounds in turn (a CPU: its speed drifts over minutes, so each loop meets the
    drift alike) instead of one loop after the other (a GPU: each with the memory to itself);
    ``failures`` are the exceptions a loop may end with (out of memory, a broken loss), noted in
    its row; ``reset_memory`` and ``peak_memory`` (GiB) measure a GPU's memory."""

    sync: Callable[[], object] = lambda: None
    in_turn: bool = True
    failures: tuple[type[BaseException], ...] = ()
    reset_memory: Callable[[], object] = lambda: None
    peak_memory: Callable[[], float | None] = lambda: None


def time_loops(loops: Sequence[tuple[str, Loop]], batch: int, settings: BenchSettings,
               how: Measuring) -> list[BenchRow]:
    """Each loop's ``warmup`` untimed steps (reported as warm-up time), then ``trials`` rounds of
    ``steps`` timed steps, each round between two syncs; the median round of each loop is kept."""
    rows: list[BenchRow] = []
    for group in [loops] if how.in_turn else [[loop] for loop in loops]:
        rows += _time_together(group, batch, settings, how)
    order = [name for name, _ in loops]
    return sorted(rows, key=lambda row: order.index(row.loop))


def _time_together(loops: Sequence[tuple[str, Loop]], batch: int, settings: BenchSettings,
                   how: Measuring) -> list[BenchRow]:
    rows: list[BenchRow] = []
    with contextlib.ExitStack() as stack:
        ready: list[tuple[str, Steps, str, float, list[float]]] = []
        for name, loop in loops:
            how.reset_memory()
            try:
                run, note = stack.enter_context(loop)
                started = time.perf_counter()
                run(settings.warmup)
                how.sync()
            except how.failures as failure:
                rows.append(_failed(name, batch, failure))
                continue
            ready.append((name, run, note, time.perf_counter() - started, []))
        for _ in range(settings.trials):
            for entry in list(ready):
                name, run, _, _, rounds = entry
                started = time.perf_counter()
                try:
                    run(settings.steps)
                    how.sync()
                except how.failures as failure:
                    rows.append(_failed(name, batch, failure))
                    ready.remove(entry)
                    continue
                rounds.append(time.perf_counter() - started)
        memory = how.peak_memory()
        for name, _, note, warmup, rounds in ready:
            elapsed = statistics.median(rounds)
            rows.append(BenchRow(name, batch, batch * settings.steps / elapsed, 1000 * elapsed / settings.steps,
                                 warmup, memory, note=note))
    return rows


class LoopUnavailable(Exception):
    """A reference loop that cannot run this network on this device (PyTorch's CPU LSTM has no
    bfloat16 kernel without native bfloat16, say): its row says why, the other loops still run."""


def _failed(name: str, batch: int, failure: BaseException) -> BenchRow:
    from netspec.train.loop import NonFiniteLoss

    if isinstance(failure, LoopUnavailable):
        note = f"not run: {failure}"
    elif isinstance(failure, NonFiniteLoss):
        note = f"the loss became {failure}: try a larger batch or a lower learning rate"
    else:
        note = "out of memory"
    return BenchRow(name, batch, 0.0, 0.0, 0.0, None, note=note)


@contextlib.contextmanager
def trainer_on_synthetic_data(trainer_class, backend, net, batch: int, settings: BenchSettings) -> Iterator[tuple]:
    """A backend's own trainer on synthetic uint8 images at the spec's input size (through the
    spec's augmentation) with this batch size, in a throw-away run folder; yields the trainer and
    an iterator over enough batches for the warm-up and the timed steps."""
    import numpy as np

    from netspec.train import TrainOptions
    from netspec.train.rundir import RunDir

    spec = net.spec.model_copy(update={
        "data": net.spec.data.model_copy(update={"dataset": "synthetic"}),
        "training": net.spec.training.model_copy(update={"batch_size": batch})})
    synthetic_net = dataclasses.replace(net, source=dataclasses.replace(net.source, spec=spec))
    with tempfile.TemporaryDirectory() as folder:
        run = RunDir(Path(folder) / "run", resume=False)
        try:
            trainer = trainer_class(backend, synthetic_net, TrainOptions(device=settings.device, progress=False), run)
            trainer.reset_sums(0.0, 0)
            indices = np.random.default_rng(0).integers(0, trainer.train_size(),
                                                        batch * (settings.warmup + settings.steps * settings.trials))
            yield trainer, iter(trainer.batches(indices.tolist(), epoch=0))
        finally:
            run.close()

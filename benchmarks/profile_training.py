"""Where a training run's wall time goes: start-up (framework import, model build, data), the
phases of each epoch (training steps, evaluation, checkpoints) and, inside the training thread's
part of a checkpoint, the calls that take the time (cProfile). Where a checkpoint is written on a
background thread while the next epoch trains, "checkpoint stall" is what the training thread
spends on it (the snapshot, and waiting for the previous write) and "checkpoint write
(background)" the write itself, which overlaps training; otherwise the two are the same time.

    python benchmarks/profile_training.py [specs/alexnet-digits.yaml] [--backend torch|keras]
        [--epochs 5] [--background-writes] [--no-kept-memory]
        [--out benchmarks/results/profile_alexnet_digits_cpu.json]

--background-writes writes checkpoints in the background on the CPU too, as a GPU run does, to
measure what that costs where the training threads occupy every core. --no-kept-memory leaves
glibc's malloc as it is (netspec.train.memory), to measure what keeping freed memory saves.

The run is the README's main job (`netspec train SPEC`, CPU, the default options) in a temporary
folder; the phases are timed by wrapping the trainer's own methods.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="specs/alexnet-digits.yaml")
    parser.add_argument("--backend", choices=["torch", "keras"], default="torch")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--background-writes", action="store_true")
    parser.add_argument("--no-kept-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/profile_alexnet_digits_cpu.json")
    args = parser.parse_args()

    started = time.perf_counter()
    if args.backend == "torch":
        import torch as framework

        from netspec_torch.trainer import TorchTrainer as Trainer
    else:
        import keras as framework

        from netspec_keras.trainer import KerasTrainer as Trainer
    imported = time.perf_counter() - started

    from netspec.train import TrainOptions
    from netspec.train.checkpoints import CheckpointStore
    from netspec.train.launch import RunRequest, train_run
    from netspec.train.loop import EpochLoop

    phases: dict[str, list[float]] = {"trainer set-up (model, data)": [], "train steps": [], "evaluation": [],
                                      "checkpoint stall": [], "checkpoint write (background)": []}
    save_profile = cProfile.Profile()

    def timed(cls, method: str, phase: str, profile: cProfile.Profile | None = None) -> None:
        real = getattr(cls, method)

        def wrapper(self, *a, **k):
            if profile is not None:
                profile.enable()
            started = time.perf_counter()
            try:
                return real(self, *a, **k)
            finally:
                phases[phase].append(time.perf_counter() - started)
                if profile is not None:
                    profile.disable()

        setattr(cls, method, wrapper)

    if args.no_kept_memory:  # the trainers call it by this name
        import sys

        sys.modules[Trainer.__module__].keep_freed_memory = lambda: False
    if args.background_writes:
        real_init = Trainer.__init__

        def init(self, *a, **k):
            real_init(self, *a, **k)
            self.write_in_background = True

        Trainer.__init__ = init
    timed(Trainer, "__init__", "trainer set-up (model, data)")
    timed(EpochLoop, "_train_epoch", "train steps")
    timed(Trainer, "evaluate", "evaluation")
    timed(Trainer, "save", "checkpoint stall", save_profile)
    timed(CheckpointStore, "save", "checkpoint write (background)")
    with tempfile.TemporaryDirectory() as folder:
        request = RunRequest(spec=ROOT / args.spec, backend=args.backend, run_dir=Path(folder) / "run",
                             overrides=[f"training.epochs={args.epochs}"],
                             options=TrainOptions(device="cpu", progress=False))
        records = train_run(request).records
        total = time.perf_counter() - started
    stats = pstats.Stats(save_profile)
    calls = sorted(((f"{Path(file).name}:{line}({name})", cumulative) for (file, line, name), (_, _, _, cumulative, _)
                    in stats.stats.items()), key=lambda item: -item[1])
    phase_totals = {phase: sum(times) for phase, times in phases.items()}
    doc = {
        "benchmark": "training profile", "spec": args.spec,
        "command": f"python benchmarks/profile_training.py {args.spec} --backend {args.backend} --epochs {args.epochs}"
                   + (" --background-writes" if args.background_writes else "")
                   + (" --no-kept-memory" if args.no_kept_memory else "") + f" --out {args.out}",
        "checkpoints_in_background": args.background_writes, "kept_memory": not args.no_kept_memory,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "backend": args.backend,
        "versions": {framework.__name__: framework.__version__},
        "wall_s": total, "framework_import_s": imported, "phases_s": phase_totals, "per_epoch_s": phases,
        "other_s": total - imported - sum(t for phase, t in phase_totals.items() if "background" not in phase),
        "checkpoint_stall_top_calls_s": dict(calls[:15]),
        "final_val_top1": records[-1]["val_top1"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wall {total:.1f} s: importing {args.backend} {imported:.1f} s, "
          + ", ".join(f"{k} {v:.1f} s" for k, v in phase_totals.items()) + f", other {doc['other_s']:.1f} s")
    for name, seconds in calls[:10]:
        print(f"  checkpoint stall: {name:60s} {seconds:6.2f} s")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()

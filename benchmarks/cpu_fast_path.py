"""Which fast-path parts pay off on the CPU: one training step of a spec's model, timed with each
combination of optimizer implementation, bfloat16 autocast, channels-last and torch.compile.

    python benchmarks/cpu_fast_path.py [specs/alexnet-digits.yaml] [--batch 32] [--steps 5] [--rounds 3]
        [--input CxHxW] [--out FILE]

    (the resnet18 figures: python benchmarks/cpu_fast_path.py specs/zoo/resnet18.yaml --input 3x64x64
     --batch 128 --steps 5 --out benchmarks/results/cpu_fast_path_resnet18_64.json)

The model is built from the spec (netspec.build), trained with the spec's optimizer on one random
batch, with the trainer's memory setting (netspec.train.memory). Each variant runs 3 untimed
steps (compilation included, reported as warm-up); then the variants take --rounds rounds of
--steps timed steps in turn, and the median round of each is reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {  # name: (fused optimizer, bf16, channels-last, compile)
    "plain fp32": (False, False, False, False),
    "fused optimizer": (True, False, False, False),
    "fused + bf16": (True, True, False, False),
    "fused + bf16 + channels-last": (True, True, True, False),
    "fused + compile": (True, False, False, True),
    "fused + bf16 + channels-last + compile": (True, True, True, True),
}


def make_step(forward, optimizer, criterion, x, y, bf16: bool):
    import torch

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(forward(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="specs/alexnet-digits.yaml")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant, in turn; the median is kept")
    parser.add_argument("--input", default=None, help="CxHxW instead of the spec's input size")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cpu_fast_path.json")
    args = parser.parse_args()

    import torch

    import netspec
    from netspec.analysis.checker import check_file
    from netspec.train.hardware import cpu_has_native_bf16, cpu_model
    from netspec.train.memory import keep_freed_memory
    from netspec_torch.trainer import loss_fn, make_optimizer

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    keep_freed_memory()
    input_shape = tuple(int(n) for n in args.input.split("x")) if args.input else None
    net = check_file(ROOT / args.spec, input_shape=input_shape)
    recipe = net.spec.training
    steps, warmups = {}, {}
    for name, (fused, bf16, channels_last, compiled) in VARIANTS.items():
        torch.manual_seed(0)
        model = netspec.build(ROOT / args.spec, input_shape=input_shape).train()
        x = torch.randn(args.batch, *net.input_shape)
        if channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        forward = torch.compile(model) if compiled else model
        optimizer = make_optimizer(model, recipe, fused=fused)
        criterion = loss_fn(net, recipe.label_smoothing)
        y = torch.randint(0, net.output_shape[0], (args.batch,))
        steps[name] = make_step(forward, optimizer, criterion, x, y, bf16)
        started = time.perf_counter()
        for _ in range(3):
            steps[name]()
        warmups[name] = time.perf_counter() - started
    # the variants take their rounds in turn: the CPU's speed drifts over minutes, and so each meets it alike
    rounds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                step()
            rounds[name].append((time.perf_counter() - started) * 1000 / args.steps)
    results = {}
    for name in VARIANTS:
        ms = statistics.median(rounds[name])
        results[name] = {"ms_per_step": ms, "images_per_s": args.batch * 1000 / ms, "warmup_s": warmups[name],
                         "rounds_ms_per_step": rounds[name]}
        print(f"{name:40s} {ms:7.1f} ms/step  {args.batch * 1000 / ms:6.0f} images/s  warm-up {warmups[name]:.1f} s")
    command = f"python benchmarks/cpu_fast_path.py {args.spec} --batch {args.batch} --steps {args.steps} " \
        f"--rounds {args.rounds}" + (f" --input {args.input}" if args.input else "")
    doc = {"benchmark": "cpu_fast_path", "command": command,
           "date": datetime.now(UTC).isoformat(timespec="seconds"),
           "optimizer": recipe.optimizer.name, "cpu": cpu_model(), "cpu_has_bf16": cpu_has_native_bf16(),
           "threads": torch.get_num_threads(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "versions": {"python": platform.python_version(), "torch": torch.__version__}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()

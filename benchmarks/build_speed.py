"""Code generation plus model build against building torchvision's own model, in one process.

netspec's side is everything from the spec file to a live model: load and check the spec, render
the PyTorch source, execute it and construct the module (``netspec.build(spec)``). torchvision's
side is ``torchvision.models.<name>()``. Both initialise their weights at random, as each does by
default; the imports are paid before timing.

    python benchmarks/build_speed.py [--runs 7] [--out benchmarks/results/build_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("resnet50", "resnet152", "mobilenet_v2", "densenet121", "vgg16")


def median_time(build, runs: int) -> dict:
    build()  # warm: first-call caches on both sides
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        build()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/build_speed.json")
    args = parser.parse_args()

    import torch
    import torchvision

    import netspec

    torch.set_num_threads(os.cpu_count() or 1)
    results = {}
    for name in MODELS:
        spec = ROOT / "specs" / "zoo" / f"{name}.yaml"
        ours = median_time(lambda spec=spec: netspec.build(spec), args.runs)
        theirs = median_time(lambda name=name: getattr(torchvision.models, name)(), args.runs)
        ratio = ours["median_s"] / theirs["median_s"]
        results[name] = {"netspec.build(spec)": ours, f"torchvision.models.{name}()": theirs, "ratio": ratio}
        print(f"{name:14s} netspec {ours['median_s'] * 1000:7.1f} ms   torchvision {theirs['median_s'] * 1000:7.1f} ms"
              f"   ratio {ratio:.2f}")
    doc = {
        "benchmark": "build_speed",
        "command": f"python benchmarks/build_speed.py --runs {args.runs}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()

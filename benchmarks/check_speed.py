"""Wall time of `netspec check` on every spec of the zoo, against what a framework summary costs.

Each zoo spec is checked from the command line (`netspec check SPEC --json`, in a fresh
interpreter, as a user runs it) and in process (check_file: load, expand modules, validate,
shape-check; nothing printed). The comparison is what the same answer costs with a framework:
`import torch` alone, and `import torch` plus a torchinfo summary of torchvision's model, for the
largest zoo networks (ResNet-152 by layers, VGG-16-BN by parameters).

    pip install -e ".[bench]"
    python benchmarks/check_speed.py [--runs 5] [--out benchmarks/results/check_speed.json]

The median of --runs runs is reported. Comparisons whose packages are not installed are skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZOO = sorted((ROOT / "specs" / "zoo").glob("*.yaml"))
LARGEST = {"resnet152": "specs/zoo/resnet152.yaml", "vgg16_bn": "specs/zoo/vgg16_bn.yaml"}


def time_command(cmd: list[str], runs: int) -> dict:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return {"command": " ".join(cmd[2:] if cmd[1] == "-m" else cmd[1:]), "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times), "runs": runs}


def in_process(spec: str, runs: int) -> dict:
    """check_file's own time, the interpreter and imports already paid (median of ``runs``)."""
    from netspec import check_file

    check_file(ROOT / spec)  # warm: imports and caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        net = check_file(ROOT / spec)
        times.append(time.perf_counter() - start)
    return {"command": f"netspec.check_file({spec!r})", "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "runs": runs, "layers": len(net.layers)}


def report(label: str, result: dict) -> None:
    print(f"{label:48s} median {result['median_s']:.3f} s  (min {result['min_s']:.3f}, max {result['max_s']:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/check_speed.json")
    args = parser.parse_args()

    py = sys.executable
    results: dict[str, dict] = {}
    for path in [ROOT / "specs/alexnet.yaml", *ZOO]:
        spec = str(path.relative_to(ROOT))
        results[f"check_file in process: {spec}"] = in_process(spec, args.runs)
        results[f"netspec check --json: {spec}"] = time_command([py, "-m", "netspec", "check", spec, "--json"],
                                                                args.runs)
        report(f"{spec} (--json, {results[f'check_file in process: {spec}']['layers']} layers)",
               results[f"netspec check --json: {spec}"])
    for spec in LARGEST.values():
        results[f"netspec check (table): {spec}"] = time_command([py, "-m", "netspec", "check", spec], args.runs)
        report(f"{spec} (table)", results[f"netspec check (table): {spec}"])
    cases = {"python (empty)": [py, "-c", "pass"]}
    for module in ("torch", "tensorflow"):
        if importlib.util.find_spec(module):
            cases[f"import {module}"] = [py, "-c", f"import {module}"]
    if all(importlib.util.find_spec(m) for m in ("torch", "torchvision", "torchinfo")):
        for name in LARGEST:
            cases[f"import torch + torchinfo summary: {name}"] = [
                py, "-c", "import torch, torchvision, torchinfo; "
                f"torchinfo.summary(torchvision.models.{name}(), input_size=(1, 3, 224, 224), verbose=0)"]
    for label, cmd in cases.items():
        results[label] = time_command(cmd, args.runs)
        report(label, results[label])
    doc = {
        "benchmark": "check_speed",
        "command": f"python benchmarks/check_speed.py --runs {args.runs}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()

"""Wall time of `netspec check` against merely importing the frameworks other summaries need.

AlexNet (a 22-layer chain) and ResNet-152 (specs/zoo/resnet152.yaml: 414 layers after its modules
expand, a graph with 50 residual additions) are checked from the command line; the in-process time
of check_file (load, expand, validate, shape-check, no printing) is reported for both too.

    python benchmarks/check_speed.py [--runs 10] [--out benchmarks/results/check_speed.json]

Each command runs in a fresh interpreter, as a user would run it; the median of --runs runs is
reported. Frameworks that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def time_command(cmd: list[str], runs: int) -> dict:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return {"command": " ".join(cmd[2:] if cmd[1] == "-m" else cmd), "median_s": statistics.median(times),
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
    print(f"check_file {spec:28s} median {statistics.median(times) * 1000:.1f} ms ({len(net.layers)} layers)")
    return {"command": f"netspec.check_file({spec!r})", "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "runs": runs, "layers": len(net.layers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/check_speed.json")
    args = parser.parse_args()

    py = sys.executable
    cases = {
        "netspec check (table)": [py, "-m", "netspec", "check", "specs/alexnet.yaml"],
        "netspec check --json": [py, "-m", "netspec", "check", "specs/alexnet.yaml", "--json"],
        "resnet152: netspec check (table)": [py, "-m", "netspec", "check", "specs/zoo/resnet152.yaml"],
        "resnet152: netspec check --json": [py, "-m", "netspec", "check", "specs/zoo/resnet152.yaml", "--json"],
        "python (empty)": [py, "-c", "pass"],
    }
    for module in ("torch", "tensorflow"):
        if importlib.util.find_spec(module):
            cases[f"import {module}"] = [py, "-c", f"import {module}"]
    results = {}
    for spec in ("specs/alexnet.yaml", "specs/zoo/resnet152.yaml"):
        results[f"check_file in process: {spec}"] = in_process(spec, args.runs)
    for label, cmd in cases.items():
        results[label] = time_command(cmd, args.runs)
        print(f"{label:28s} median {results[label]['median_s']:.3f} s  "
              f"(min {results[label]['min_s']:.3f}, max {results[label]['max_s']:.3f})")
    doc = {
        "benchmark": "check_speed",
        "command": f"python benchmarks/check_speed.py --runs {args.runs}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()

"""Wall time of `netspec check` against merely importing the frameworks other summaries need.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/check_speed.json")
    args = parser.parse_args()

    py = sys.executable
    cases = {
        "netspec check (table)": [py, "-m", "netspec", "check", "specs/alexnet.yaml"],
        "netspec check --json": [py, "-m", "netspec", "check", "specs/alexnet.yaml", "--json"],
        "python (empty)": [py, "-c", "pass"],
    }
    for module in ("torch", "tensorflow"):
        if importlib.util.find_spec(module):
            cases[f"import {module}"] = [py, "-c", f"import {module}"]
    results = {}
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

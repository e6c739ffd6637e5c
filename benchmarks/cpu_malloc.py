"""Measure what keeping freed memory in the process (netspec.train.memory) does for CPU training:
our trainer's step on alexnet-digits (`netspec bench`'s netspec loop), with and without it, each
in a fresh process, alternating.

    python benchmarks/cpu_malloc.py --out benchmarks/results/cpu_malloc.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

CHILD = """
import json, sys
import netspec_torch.trainer as trainer
if sys.argv[1] == "off":
    trainer.keep_freed_memory = lambda: False
from netspec import check_file
from netspec.codegen.backend import get_backend
from netspec.train.bench import BenchSettings
net = check_file("specs/alexnet-digits.yaml")
settings = BenchSettings([32], steps=10, warmup=2, trials=2, device="cpu", loops=["netspec"])
rows, _, _ = get_backend("torch").bench(net, settings)
print(json.dumps({"images_per_s": rows[0].images_per_s}))
"""


def run(mode: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.strip().splitlines()[-1])
    result["system_s"] = round(after.ru_stime - before.ru_stime, 2)
    result["user_s"] = round(after.ru_utime - before.ru_utime, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"on": [], "off": []}
    for _ in range(args.repeats):
        for mode in ("off", "on"):
            results[mode].append(run(mode))
    doc = {
        "benchmark": "CPU training step with and without keeping freed memory (glibc mallopt)",
        "command": f"python benchmarks/cpu_malloc.py --out {args.out}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "spec": "specs/alexnet-digits.yaml", "batch_size": 32,
        "median_images_per_s": {m: round(statistics.median(r["images_per_s"] for r in rs), 1)
                                for m, rs in results.items()},
        "runs": results,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc["median_images_per_s"]))


if __name__ == "__main__":
    main()

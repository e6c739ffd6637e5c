"""Record a finished `netspec train` run as a results file: the exact command, versions, machine,
and every epoch's metrics.

    netspec train specs/alexnet-digits.yaml --backend torch --epochs 10 --run-dir runs/digits-torch
    python benchmarks/record_training.py runs/digits-torch --out benchmarks/results/train_alexnet_digits_torch.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path


def _relative(path: str) -> str:
    """run.json records the spec's absolute path; results name it from the repository when inside it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    info = json.loads((args.run_dir / "run.json").read_text())
    metrics = [json.loads(line) for line in (args.run_dir / "metrics.jsonl").read_text().splitlines() if line]
    if not metrics:
        raise SystemExit(f"{args.run_dir} has no finished epoch")
    best = max(metrics, key=lambda r: r["val_top1"])
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    frameworks = ["torch", "torchvision"] if info["backend"] == "torch" else ["keras", "tensorflow-cpu"]

    doc = {
        "benchmark": "training run",
        "command": " ".join(["netspec", *info["command"][1:]]),
        "spec": _relative(info["spec_file"]),
        "backend": info["backend"],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_gpu()}",
        "versions": {"netspec": info.get("netspec_version"), "python": platform.python_version(),
                     **{name: installed(name) for name in frameworks}},
        "final": metrics[-1],
        "best_val_top1": best["val_top1"],
        "best_epoch": best["epoch"],
        "total_seconds": sum(r["seconds"] for r in metrics),
        "epochs": metrics,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"best val top-1 {best['val_top1']:.3f} at epoch {best['epoch']}; wrote {args.out}")


def _gpu() -> str:
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return "no GPU"
    names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                           text=True, check=False).stdout.split("\n")
    return ", ".join(n for n in names if n) or "no GPU"


if __name__ == "__main__":
    main()

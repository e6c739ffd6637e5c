"""Accuracy of the README's main command with the CPU trainer's dropout masks drawn by torch.rand
(netspec_torch.dropout, the default) and by nn.Dropout's bernoulli_, over several seeds: the two
draw from the same law, so their accuracies must agree up to the seed-to-seed spread. Each run is
`netspec train specs/alexnet-digits.yaml --set training.seed=S` in a fresh process.

    python benchmarks/dropout_masks.py --seeds 8 --out benchmarks/results/dropout_masks_alexnet_digits.json

With --mask-timing it times instead one dropout layer's forward pass on the CPU, nn.Dropout against
netspec_torch.dropout.UniformMaskDropout, at alexnet-digits' drop6 shape (batch 32 of 9216 values):

    python benchmarks/dropout_masks.py --mask-timing --out benchmarks/results/dropout_mask_timing.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

CHILD = """
import json, sys
from pathlib import Path
import netspec_torch.trainer as trainer
from netspec.train import TrainOptions
from netspec.train.launch import RunRequest, train_run
masks, seed, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
if masks == "bernoulli":
    trainer.use_uniform_masks = lambda model: 0  # keep nn.Dropout
request = RunRequest(spec=Path("specs/alexnet-digits.yaml"), backend="torch", run_dir=folder,
                     overrides=[f"training.seed={seed}"], options=TrainOptions(device="cpu", progress=False))
records = train_run(request).records
print(json.dumps({"val_top1": [r["val_top1"] for r in records], "images_per_s": [r["images_per_s"] for r in records]}))
"""


def run(masks: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, masks, str(seed), str(Path(folder) / "run")],
                             capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = round(time.perf_counter() - start, 1)
    result["final_val_top1"] = result["val_top1"][-1]
    print(f"{masks:9s} seed {seed}: val top-1 {result['final_val_top1']:.3f} ({result['wall_s']} s)", flush=True)
    return result


def mask_timing(out: Path, repeats: int = 200) -> None:
    import torch

    from netspec_torch.dropout import UniformMaskDropout

    layers = {"nn.Dropout (bernoulli_)": torch.nn.Dropout(0.5),
              "UniformMaskDropout (torch.rand)": UniformMaskDropout(0.5)}
    results: dict[str, dict[str, float]] = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(32, 9216, dtype=dtype)
        for name, layer in layers.items():
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                layer(x)
                times.append(time.perf_counter() - started)
            results.setdefault(name, {})[str(dtype).removeprefix("torch.")] = round(1000 * statistics.median(times), 3)
    doc = {
        "benchmark": "one dropout layer's forward pass on the CPU, 32x9216 values, p=0.5: median ms of "
                     f"{repeats} calls",
        "command": f"python benchmarks/dropout_masks.py --mask-timing --out {out}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "median_ms": results,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0 .. N-1, each with both kinds of mask")
    parser.add_argument("--mask-timing", action="store_true", help="time one dropout layer instead")
    args = parser.parse_args()
    if args.mask_timing:
        mask_timing(args.out)
        return
    runs: dict[str, dict[int, dict]] = {"uniform": {}, "bernoulli": {}}
    for seed in range(args.seeds):
        for masks in runs:
            runs[masks][seed] = run(masks, seed)
    finals = {masks: [r["final_val_top1"] for r in by_seed.values()] for masks, by_seed in runs.items()}
    doc = {
        "benchmark": "main command's final val top-1: dropout masks from torch.rand vs nn.Dropout's bernoulli_",
        "command": f"python benchmarks/dropout_masks.py --seeds {args.seeds} --out {args.out}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "spec": "specs/alexnet-digits.yaml",
        "final_val_top1": {masks: {"mean": round(statistics.mean(v), 4), "stdev": round(statistics.stdev(v), 4),
                                   "min": min(v), "max": max(v)} for masks, v in finals.items()},
        "mean_paired_difference": round(statistics.mean(u - b for u, b in zip(finals["uniform"], finals["bernoulli"],
                                                                              strict=True)), 4),
        "runs": runs,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc["final_val_top1"]), "paired difference", doc["mean_paired_difference"])


if __name__ == "__main__":
    main()

"""Keras forward time of MobileNetV2 (netspec's spec) with its depthwise convolutions written as
DepthwiseConv2D, against the same network with them as grouped Conv2D (what netspec emitted before).

    python benchmarks/keras_depthwise.py [--batch 8] [--runs 10]

Both models have the same weights (converted from one PyTorch state dict), and their outputs are
compared; results go to benchmarks/results/keras_depthwise.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/keras_depthwise.json")
    args = parser.parse_args()

    import torch  # noqa: F401  (before TensorFlow, as netspec's entry points do)

    from netspec import check_file
    from netspec.codegen.backend import get_backend
    from netspec.layers.conv import _ConvNd
    from netspec_keras import set_from_torch_layout

    net = check_file(ROOT / "specs/zoo/mobilenet_v2.yaml")
    torch_model = get_backend("torch").load(net)
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((args.batch, 224, 224, 3)).astype("float32")
    keras_backend = get_backend("keras")

    def timed(model) -> dict:
        model.predict_on_batch(x)  # trace once
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            model.predict_on_batch(x)
            times.append(time.perf_counter() - start)
        return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}

    depthwise = keras_backend.load(net)
    set_from_torch_layout(depthwise, net, state)
    results = {"DepthwiseConv2D": timed(depthwise)}
    # the grouped Conv2D netspec emitted before: no convolution counts as depthwise, for the lowering
    # and the kernel layout alike
    depthwise_rule = _ConvNd.depthwise
    _ConvNd.depthwise = lambda self, in_channels: False  # type: ignore[method-assign]
    try:
        grouped = keras_backend.load(net)
        set_from_torch_layout(grouped, net, state)
    finally:
        _ConvNd.depthwise = depthwise_rule  # type: ignore[method-assign]
    results["grouped Conv2D"] = timed(grouped)
    expected = depthwise.predict_on_batch(x)
    difference = float(np.abs(expected - grouped.predict_on_batch(x)).max())
    spread = float(expected.std(axis=0).max())  # how much the outputs differ between the batch's images
    for label, row in results.items():
        print(f"{label:16s} median {row['median_s'] * 1000:7.1f} ms per batch of {args.batch}")
    print(f"largest output difference between the two: {difference:.2e} (between images: up to {spread:.2e})")
    doc = {"benchmark": "keras_depthwise", "command": f"python benchmarks/keras_depthwise.py --batch {args.batch} "
           f"--runs {args.runs}", "date": datetime.now(UTC).isoformat(timespec="seconds"),
           "python": platform.python_version(), "keras": version("keras"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "results": results,
           "largest_output_difference": difference, "output_spread_between_images": spread}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""`netspec import` over every classification model torchvision lists: which ones round-trip (the
spec checked, built, the original's weights loaded strictly, the same outputs), and for the
others the message that names what has no layer. Random weights; nothing is downloaded.

    python benchmarks/import_torchvision.py [--only resnet50 vit_b_16] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
# the input each model is imported at: torchvision's published one (ViT and MaxViT check it;
# Inception-v3 is defined at 299x299)
INPUTS = {"inception_v3": (3, 299, 299)}
# as the zoo specs build them: without the auxiliary heads only training uses
ARGUMENTS = {"googlenet": {"aux_logits": False, "init_weights": False},
             "inception_v3": {"aux_logits": False, "init_weights": False}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/import_torchvision.json")
    args = parser.parse_args()

    import torch
    import torchvision

    from netspec.errors import UserError
    from netspec.importing import import_torch_model

    torch.set_num_threads(os.cpu_count() or 1)
    names = args.only or torchvision.models.list_models(module=torchvision.models)
    results = {}
    with TemporaryDirectory() as scratch:
        for name in names:
            start = time.perf_counter()
            try:
                imported = import_torch_model(f"torchvision.models.{name}", ARGUMENTS.get(name, {}),
                                              INPUTS.get(name, (3, 224, 224)),
                                              Path(scratch) / f"{name}.yaml")
                results[name] = {"imported": True, "lines": len(imported.text.splitlines()),
                                 "layers": imported.layers, **(imported.verified or {})}
            except UserError as error:
                results[name] = {"imported": False, "why": str(error).splitlines()[0]}
            results[name]["seconds"] = round(time.perf_counter() - start, 2)
            shown = (f"{results[name]['lines']} lines" if results[name]["imported"] else results[name]["why"])
            print(f"{name:28s} {results[name]['seconds']:6.1f} s  {shown}", flush=True)
    doc = {"benchmark": "import_torchvision", "command": "python benchmarks/import_torchvision.py",
           "date": datetime.now(UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
           "torch": torch.__version__, "torchvision": torchvision.__version__,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "imported": sum(r["imported"] for r in results.values()), "models": len(results), "results": results}
    if args.only is None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    print(f"{doc['imported']} of {doc['models']} imported")


if __name__ == "__main__":
    main()

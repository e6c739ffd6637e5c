"""`netspec import` over a model library's classification models: which ones round-trip (the spec
checked, built, the original's weights loaded strictly, the same outputs), and for the others the
message that names what has no layer. Random weights; nothing is downloaded.

    python benchmarks/import_models.py torchvision [--only resnet50 vit_b_16]
    python benchmarks/import_models.py timm [--only resnet18 vit_tiny_patch16_224]
    python benchmarks/import_models.py timm --random 60
    python benchmarks/import_models.py keras [--only ResNet50 MobileNetV2]
    python benchmarks/import_models.py torchvision-pt2 [--only resnet50 vit_b_16]
    python benchmarks/import_models.py torchvision-onnx [--only resnet50 vit_b_16]

torchvision: every classification model ``torchvision.models.list_models(module=torchvision.models)``
lists, at 224x224 (Inception-v3 at 299x299).

timm: its list holds about 1,400 models from about 100 modules (one module, one family's code);
importing all of them takes hours on two cores, so a run takes a sample: from each module, the
model with the fewest parameters (counted on the meta device, which allocates nothing), at the
input its configuration names. The share is of that sample. With ``--random N``, N models drawn
from the whole list instead (seeded, so a rerun draws the same), whose share estimates the list's;
results to import_timm_random.json.

keras: every model keras.applications builds (weights=None), at its own input; the MobileNetV3s,
which take any size, at 224x224.

torchvision-pt2: the same torchvision models, each exported first (torch.export.export on one
example, in evaluation mode) and saved as a .pt2 file, which netspec import reads; the export's own
time is not counted.

torchvision-onnx: the same, exported to ONNX by PyTorch's exporter (dynamo=True) instead; the
model is a probe first (netspec_torch.importer.probe_model: batch-norm statistics as in a trained
network, no weight constant), since the ONNX round trip runs on the file's own weights.

Results go to benchmarks/results/import_<library>.json (not with --only).
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# torchvision: Inception-v3 is defined at 299x299; GoogLeNet and Inception-v3 as the zoo specs
# build them, without the auxiliary heads only training uses
TORCHVISION_INPUTS = {"inception_v3": (3, 299, 299)}
TORCHVISION_ARGUMENTS = {"googlenet": {"aux_logits": False, "init_weights": False},
                         "inception_v3": {"aux_logits": False, "init_weights": False}}


def torchvision_models(only: list[str] | None) -> list[tuple[str, str, dict[str, Any], tuple[int, ...] | None]]:
    """(name, target, arguments, input) of each model to import."""
    import torchvision

    names = only or torchvision.models.list_models(module=torchvision.models)
    return [(name, f"torchvision.models.{name}", TORCHVISION_ARGUMENTS.get(name, {}),
             TORCHVISION_INPUTS.get(name, (3, 224, 224))) for name in names]


def timm_models(only: list[str] | None,
                drawn: int = 0) -> list[tuple[str, str, dict[str, Any], tuple[int, ...] | None]]:
    """The smallest model of each of timm's modules (or the ones named, or ``drawn`` at random from
    the whole list), at its configured input."""
    import random

    import timm
    import timm.models._registry as registry
    import torch

    candidates = only or timm.list_models()
    if drawn:
        only = random.Random(0).sample(sorted(candidates), drawn)  # each its own entry, as --only
        candidates = only
    sizes: dict[str, tuple[int, str, tuple[int, ...]]] = {}  # module -> (parameters, name, input)
    for name in candidates:
        try:
            with torch.device("meta"):
                model = timm.create_model(name)
        except Exception as error:  # a model timm cannot build without its weights or a package
            print(f"{name}: not built on the meta device ({type(error).__name__})", flush=True)
            continue
        shape = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
        count = sum(p.numel() for p in model.parameters())
        module = registry._model_to_module.get(name, name)
        key = name if only else module
        if key not in sizes or count < sizes[key][0]:
            sizes[key] = (count, name, shape)
    return [(name, "timm.create_model", {"model_name": name}, shape) for _, name, shape in sizes.values()]


def keras_models(only: list[str] | None) -> list[tuple[str, str, dict[str, Any], tuple[int, ...] | None]]:
    """Every model keras.applications builds, without its weights, at its own input (224x224 where
    it takes any size)."""
    from netspec_keras import import_keras

    keras = import_keras()
    names = only or sorted(name for name in dir(keras.applications) if name[0].isupper())
    return [(name, f"keras.applications.{name}", {"weights": None, "input_shape": [224, 224, 3]}
             if name.startswith("MobileNetV3") else {"weights": None}, None) for name in names]


def exported(name: str, shape: tuple[int, ...], arguments: dict[str, Any], folder: Path) -> str:
    """A torchvision model saved as a torch.export program (one example, evaluation mode)."""
    import torch
    import torchvision

    model = torchvision.models.get_model(name, **arguments).eval()
    path = folder / f"{name}.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, *shape),)), str(path))
    return str(path)


def exported_onnx(name: str, shape: tuple[int, ...], arguments: dict[str, Any], folder: Path) -> str:
    """A probe of a torchvision model exported to ONNX (one example, evaluation mode)."""
    import torch
    import torchvision

    from netspec_torch.importer import probe_model

    model = probe_model(torchvision.models.get_model(name, **arguments), shape)
    path = folder / f"{name}.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, *shape),), str(path), dynamo=True, verbose=False)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", choices=["torchvision", "timm", "keras", "torchvision-pt2", "torchvision-onnx"])
    parser.add_argument("--only", nargs="*", default=None, help="These models only (results are not written).")
    parser.add_argument("--random", type=int, default=0, metavar="N",
                        help="timm: N models drawn from its whole list (seed 0) instead of one per module.")
    args = parser.parse_args()

    import torch

    from netspec.errors import UserError
    from netspec.importing import import_model

    torch.set_num_threads(os.cpu_count() or 1)
    if args.random and args.library != "timm":
        parser.error("--random is for timm")
    models = timm_models(args.only, args.random) if args.library == "timm" else \
        {"torchvision": torchvision_models, "keras": keras_models, "torchvision-pt2": torchvision_models,
         "torchvision-onnx": torchvision_models}[args.library](args.only)
    results: dict[str, dict[str, Any]] = {}
    with TemporaryDirectory() as scratch:
        for name, target, arguments, shape in models:
            if args.library in ("torchvision-pt2", "torchvision-onnx"):
                export = exported if args.library == "torchvision-pt2" else exported_onnx
                try:
                    target = export(name, shape or (3, 224, 224), arguments, Path(scratch))
                except Exception as error:  # torch.export's own limits: counted apart
                    results[name] = {"imported": False, "not_exported": f"{type(error).__name__}: {error}"[:300]}
                    print(f"{name:32s} not exported: {results[name]['not_exported'][:100]}", flush=True)
                    continue
                arguments, shape = {}, None  # the program says its input
            start = time.perf_counter()
            try:
                imported = import_model(target, arguments, shape, Path(scratch) / f"{name}.yaml")
                results[name] = {"imported": True, "lines": len(imported.text.splitlines()),
                                 "layers": imported.layers, "input": list(imported.input_shape),
                                 **(imported.verified or {})}
            except UserError as error:
                results[name] = {"imported": False, "why": str(error).splitlines()[0]}
            except Exception as error:  # a fault of netspec import: counted apart, to be fixed
                results[name] = {"imported": False, "crash": f"{type(error).__name__}: {error}"[:300]}
            result = results[name]
            result.setdefault("input", list(shape) if shape else None)
            result["seconds"] = round(time.perf_counter() - start, 2)
            shown = f"{result['lines']} lines" if result["imported"] else result.get("why") or result["crash"]
            if result["imported"] and "flat list" in imported.text:
                result["flat"] = next(line for line in imported.text.splitlines() if "flat list" in line)
                shown += " (flat)"
            print(f"{name:32s} {result['seconds']:6.1f} s  {shown}", flush=True)
    library = __import__(args.library.split("-")[0])  # its version
    doc = {"benchmark": f"import_{args.library}", "command": f"python benchmarks/import_models.py {args.library}",
           "date": datetime.now(UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
           "torch": torch.__version__, library.__name__: library.__version__,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "imported": sum(r["imported"] for r in results.values()), "models": len(results),
           "crashed": sum("crash" in r for r in results.values()),
           "not_exported": sum("not_exported" in r for r in results.values()),
           "flat": sum("flat" in r for r in results.values()), "results": results}
    if args.library == "timm":
        doc["sample"] = f"{args.random} models drawn at random (seed 0) from timm.list_models()" if args.random \
            else "the model with the fewest parameters of each of timm's model modules"
        if args.random:
            doc["command"] += f" --random {args.random}"
    if args.only is None:
        stem = args.library.replace("-", "_") + ("_random" if args.random else "")
        out = ROOT / f"benchmarks/results/import_{stem}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")
    print(f"{doc['imported']} of {doc['models']} imported, {doc['crashed']} crashed")


if __name__ == "__main__":
    main()

"""``netspec import``: an existing model read back as a spec, verified by a round trip before it
is written.

The backend reads the model into a tree of module instances (netspec.importing.tree);
netspec.importing.structure turns the tree into module definitions, params and repeats;
netspec.importing.yaml_text writes the YAML. Before anything is written, the spec is checked,
its model built, the original's weights loaded into it strictly, and both models run on the same
inputs: a spec that loads but computes something else is never written.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspec.files.outputs import atomic_path, check_target
from netspec.importing.structure import SpecBuilder
from netspec.importing.yaml_text import spec_text
from netspec.layers.base import class_name_problem

DEFAULT_INPUT = (3, 224, 224)


@dataclass
class Imported:
    """What netspec import wrote, and what its round trip measured."""

    spec: Path
    weights: Path | None
    text: str
    layers: int
    verified: dict[str, Any] | None
    input_shape: tuple[int, ...]


def spec_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", stem).strip("_-") or "model"
    if not name[0].isalpha():
        name = f"model_{name}"
    return f"{name}_model" if class_name_problem(name) else name


def import_torch_model(target: str, arguments: dict[str, Any], input_shape: tuple[int, ...] | None, out: Path, *,
                       weights: Path | None = None, verify: bool = True, force: bool = False) -> Imported:
    """Reads the PyTorch model ``target`` builds and writes it as the spec ``out`` (and its state
    dict as ``weights``), after a round trip unless ``verify`` is off."""
    from netspec.codegen.backend import require_modules

    require_modules("torch", "torch")
    import torch

    from netspec import check_file
    from netspec.codegen.backend import get_backend
    from netspec_torch.importer import TorchImporter, example_shape, load_target, round_trip

    check_target(out, force=force)
    if weights is not None:
        check_target(weights, force=force)
    model, made_by = load_target(target, arguments)
    # an image classifier's usual input where the model does not say (a ViT keeps its image size)
    shape = input_shape or example_shape(model) or DEFAULT_INPUT
    tree = TorchImporter(model, torch.randn(1, *shape), given=input_shape is not None).tree()
    modules, layers = SpecBuilder(tree).build()
    name = spec_name(made_by)
    document: dict[str, Any] = {"name": name, "class_name": type(model).__name__, "input": list(shape)}
    if modules:
        document["modules"] = modules
    document["layers"] = layers
    call = f"{target}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
    text = spec_text(document, [f"{call}, imported by netspec import: each module class a module definition,",
                                "the state-dict names the original's."])
    verified = None
    with tempfile.TemporaryDirectory(prefix="netspec-import-") as scratch:
        draft = Path(scratch) / f"{name}.yaml"
        draft.write_text(text)
        net = check_file(draft)
        if verify:
            verified = round_trip(model, get_backend("torch").load(net), shape)
    with atomic_path(out) as staged:
        Path(staged).write_text(text)
    if weights is not None:
        from safetensors.torch import save_file

        with atomic_path(weights) as staged:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, staged)
    return Imported(out, weights, text, len(net.layers), verified, shape)

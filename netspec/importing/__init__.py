"""``netspec import``: an existing model read back as a spec, verified by a round trip before it
is written.

The target (a callable, or a saved ``.pt2``, ``.keras`` or ``.onnx`` file) gives a model; the
backend of its framework reads it (a ``ModelReader``): PyTorch's (a torch.export program's
too) into a tree of module instances (netspec.importing.tree) that
netspec.importing.structure turns into module definitions, params and repeats; Keras' functional
graph layer by layer, with the original's layer names.
netspec.importing.yaml_text writes the YAML. Before anything is written, the spec is checked,
its model built, the original's weights loaded into it strictly, and both models run on the same
inputs: a spec that loads but computes something else is never written.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from netspec.errors import ModelImportError
from netspec.files.outputs import Outputs, check_target
from netspec.importing.yaml_text import spec_text
from netspec.layers.base import class_name_problem

DEFAULT_INPUT = (3, 224, 224)
SAVED_MODELS = (".pt2", ".keras", ".onnx")  # the files netspec import reads a model from


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


class ModelReader(Protocol):
    """What a backend gives netspec import for its framework's models."""

    def read(self, model: Any, input_shape: tuple[int, ...] | None) -> tuple[dict[str, Any], list[str]]:
        """The spec's ``input``, ``modules`` and ``layers`` (its name apart), and the comment lines
        that say how it was read."""
        ...

    def round_trip(self, model: Any, net: Any) -> dict[str, Any]:
        """The original against the spec's model(s), refused with a ModelImportError where they
        differ; what it measured."""
        ...

    def save_weights(self, model: Any, net: Any, path: str) -> None:
        """The original's weights as a safetensors state dict of the spec (PyTorch's names and layout)."""
        ...


def _framework(model: Any) -> str | None:
    """Which framework's object ``model`` is, from its classes' modules (importing none)."""
    modules = [cls.__module__ for cls in type(model).__mro__]
    if type(model).__name__ == "ModelProto" and any(m.startswith("onnx") for m in modules):
        return "onnx"
    if any(m.startswith(("torch.nn", "torch.export")) for m in modules):  # a module, or an exported program
        return "torch"
    if any(m.startswith(("keras.", "tf_keras.", "tensorflow.python.keras")) for m in modules):
        return "keras"
    return None


def load_target(target: str, arguments: dict[str, Any]) -> tuple[Any, str]:
    """The model a target names: a callable (``torchvision.models.resnet50``,
    ``package.module:function``) called with ``arguments``, or a saved ``torch.export`` program
    (``.pt2``), ``.keras`` or ``.onnx`` file; and the name of what built it (for the spec's name)."""
    import importlib
    import os
    import sys

    suffix = Path(target).suffix.lower()
    if suffix in SAVED_MODELS and not target.endswith(suffix):
        target = target[: -len(suffix)] + suffix  # M.ONNX is an ONNX file
    if Path(target).is_file() and suffix not in SAVED_MODELS:
        raise ModelImportError.single(f"{target} is not a .pt2, .keras or .onnx file: netspec import reads a "
                                      "model's graph, which a weights file or a state dict does not hold",
                                      hint="name the Python callable that builds the model (--arg for its "
                                           "arguments), or save it with torch.export.save")
    if suffix in SAVED_MODELS and arguments:
        raise ModelImportError.single(f"--arg is for a callable; a {suffix} file is read as it is saved")
    if target.endswith(".keras"):
        from netspec_keras.importer import load_keras_file

        return load_keras_file(Path(target)), Path(target).stem
    if target.endswith(".onnx"):
        from netspec.importing.onnx_reader import load_onnx_file

        return load_onnx_file(Path(target)), Path(target).stem
    if target.endswith(".pt2"):
        from netspec.codegen.backend import require_modules

        require_modules("torch", "torch")
        from netspec_torch.exported import load_program

        return load_program(Path(target)), Path(target).stem
    module_name, _, attribute = target.rpartition(":") if ":" in target else target.rpartition(".")
    if not module_name or not attribute:
        raise ModelImportError.single(f"{target!r} does not name a Python callable or a .pt2, .keras or .onnx file",
                                      hint="write module.callable (torchvision.models.resnet50) or "
                                           "package.module:callable")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the user's own package, as `python -m` would find it
    if module_name.split(".")[0] in ("keras", "tensorflow", "tf_keras"):
        from netspec_keras import import_keras

        import_keras()  # quietly, and after Triton (netspec.codegen.backend.load_triton_safely)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelImportError.single(f"cannot import {module_name!r}: {error}",
                                      hint="install the package, or run from the folder that holds it") from None
    factory = getattr(module, attribute, None)
    if isinstance(factory, type(sys)):
        raise ModelImportError.single(f"{target} is a module, not a callable",
                                      hint=f"name the callable in it: {target}.NAME")
    if not callable(factory):
        raise ModelImportError.single(f"{module_name} has no callable {attribute!r}")
    call = f"{target}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
    try:
        model = factory(**arguments)
    except Exception as error:  # the user's code: a wrong argument, a download it cannot make
        raise ModelImportError.single(f"{call} failed: {type(error).__name__}: {str(error).strip()[:300]}",
                                      hint="check the --arg names and values (Keras applications: --arg "
                                           "weights=null builds without downloading weights)") from None
    if _framework(model) is None:
        raise ModelImportError.single(f"{target} returned a {type(model).__name__}, not a torch.nn.Module or a "
                                      "Keras model")
    name = arguments.get("model_name")  # a factory of many (timm.create_model): the spec is the model's
    return model, name if isinstance(name, str) else attribute


def _reader(model: Any) -> ModelReader:
    from netspec.codegen.backend import require_modules

    framework = _framework(model)
    if framework == "onnx":
        from netspec.importing.onnx_reader import OnnxModelReader

        return OnnxModelReader()
    require_modules(str(framework), str(framework))
    if framework == "torch":
        from netspec_torch.importer import TorchModelReader

        return TorchModelReader()
    from netspec_keras.importer import KerasModelReader

    return KerasModelReader()


def import_model(target: str, arguments: dict[str, Any], input_shape: tuple[int, ...] | None, out: Path, *,
                 weights: Path | None = None, verify: bool = True, force: bool = False) -> Imported:
    """Reads the model ``target`` names and writes it as the spec ``out`` (and its weights as
    ``weights``), after a round trip unless ``verify`` is off."""
    from netspec import check_file

    check_target(out, force=force)
    if weights is not None:
        if weights.resolve() == out.resolve():
            raise ModelImportError.single(f"-o and --weights both name {out}", hint="give the weights their own file")
        if not weights.name.endswith(".safetensors"):
            raise ModelImportError.single(f"--weights {weights}: netspec import writes a .safetensors file",
                                          hint=f"--weights {weights.with_suffix('.safetensors').name}")
        check_target(weights, force=force)
    model, made_by = load_target(target, arguments)
    reader = _reader(model)
    body, how = reader.read(model, input_shape)
    name = spec_name(made_by)
    document: dict[str, Any] = {"name": name, **body}
    call = target if target.endswith(SAVED_MODELS) else \
        f"{target}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
    text = spec_text(document, [f"{call}, imported by netspec import:", *how])
    verified = None
    with tempfile.TemporaryDirectory(prefix="netspec-import-") as scratch:
        draft = Path(scratch) / f"{name}.yaml"
        draft.write_text(text)
        net = check_file(draft)
        if verify:
            verified = reader.round_trip(model, net)
        with Outputs(force=force) as outputs:  # both files, or neither
            Path(outputs.file(out)).write_text(text)
            if weights is not None:
                reader.save_weights(model, net, str(outputs.file(weights)))
    return Imported(out, weights, text, len(net.layers), verified, tuple(body["input"]))

"""netspec: one YAML network definition, checked before it runs, emitted for PyTorch and Keras.

The core (spec, loader, checker) is pure Python and never imports a deep-learning framework.

The Python API. ``spec`` is everywhere a path to a YAML file or the name of a packaged spec
(``"resnet50"``, ``"alexnet-digits"``: :func:`list_models`). ``overrides`` sets params or fields
by dotted path, as ``netspec ... --set`` does: ``{"num_classes": 10, "training.epochs": 5}``.
Mistakes raise a :class:`netspec.errors.UserError`, whose text names the file, line, layer and
fix; its subclass says what kind it is: SpecError (the spec), WeightsError, DataError,
OutputError, RunError, UsageError (options), SetupError (what the machine lacks).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "build", "check", "check_file", "convert", "create_model", "emit", "list_models",
           "load_spec"]


def _overrides(overrides):
    from netspec.language.params import overrides_from

    return overrides_from(overrides, label="overrides")


def list_models(pattern: str = "*") -> list[str]:
    """The names of the specs that ship with netspec matching ``pattern`` (``"resnet*"``), sorted."""
    from netspec.language.catalog import list_models as _list_models

    return _list_models(pattern)


def load_spec(spec, overrides=None):
    """Read, resolve and validate a spec (see :func:`netspec.language.spec.load_spec`)."""
    from netspec.language.spec import load_spec as _load

    return _load(spec, _overrides(overrides))


def check(spec, overrides=None, *, input_shape=None, batch=1):
    """Load and check a spec: a :class:`netspec.analysis.checker.CheckedNet` with every layer's shape,
    parameters and MACs (``.layers``) and the totals (``.totals``)."""
    from netspec.analysis.checker import check_file as _check_file

    return _check_file(spec, _overrides(overrides), input_shape=input_shape, batch=batch)


check_file = check  # the name of earlier releases


def emit(spec, backend: str = "torch", *, overrides=None, input_shape=None) -> str:
    """The generated source of a spec for ``backend`` (``"torch"`` or ``"keras"``)."""
    from netspec.codegen.backend import get_backend

    net = check(spec, overrides, input_shape=input_shape)
    return get_backend(backend).emit(net)


def build(spec, backend: str = "torch", *, overrides=None, weights=None, input_shape=None):
    """The live model of a spec, built from the very source ``emit`` returns; ``weights`` is a
    safetensors file or a plain PyTorch state dict (read with ``weights_only=True``)."""
    from netspec.codegen.backend import get_backend, require_memory

    net = check(spec, overrides, input_shape=input_shape)
    require_memory(net, "building the model", 2 if weights is not None else 1,
                   hint="use a machine with more memory, or emit the source without building it")
    return get_backend(backend).load(net, weights=weights)


def create_model(name: str, backend: str = "torch", *, weights=None, input_shape=None, **params):
    """A packaged spec's model by name, its params given as keywords, as timm's ``create_model``:
    ``create_model("resnet50", num_classes=10)``."""
    return build(name, backend, overrides=params, weights=weights, input_shape=input_shape)


def convert(spec, weights, to: str, output="out", *, overrides=None, force: bool = False):
    """Move trained weights between backends (``to="keras"`` or ``"torch"``), writing them into the
    folder ``output``; returns the written artifacts (``.path``, ``.format``)."""
    from pathlib import Path

    from netspec.files.conversion import convert as _convert

    return _convert(check(spec, overrides), Path(weights), to, Path(output), force=force)

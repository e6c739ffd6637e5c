"""netspec: one YAML network definition, checked before it runs, emitted for PyTorch and Keras.

The core (spec, loader, checker) is pure Python and never imports a deep-learning framework.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "build", "check_file", "emit", "load_spec"]


def load_spec(path, overrides=None):
    """Read, resolve and validate a spec file (see :func:`netspec.spec.load_spec`)."""
    from netspec.spec import load_spec as _load

    return _load(path, overrides)


def check_file(path, overrides=None, *, input_shape=None, batch=1):
    """Load and check a spec file; returns a :class:`netspec.check.CheckedNet`."""
    from netspec.check import check_file as _check_file

    return _check_file(path, overrides, input_shape=input_shape, batch=batch)


def emit(path, backend: str = "torch", *, overrides=None, input_shape=None) -> str:
    """The generated source of a spec for ``backend`` (``"torch"`` or ``"keras"``)."""
    from netspec.backend import get_backend

    net = check_file(path, overrides, input_shape=input_shape)
    return get_backend(backend).emit(net)


def build(path, backend: str = "torch", *, overrides=None, weights=None, input_shape=None):
    """The live model of a spec, built from the very source ``emit`` returns; ``weights`` is a
    safetensors file or a plain PyTorch state dict (read with ``weights_only=True``)."""
    from netspec.backend import get_backend, require_memory

    net = check_file(path, overrides, input_shape=input_shape)
    require_memory(net, "building the model", 2 if weights is not None else 1,
                   hint="use a machine with more memory, or emit the source without building it")
    return get_backend(backend).load(net, weights=weights)

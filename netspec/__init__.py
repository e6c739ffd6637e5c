"""netspec: one YAML network definition, checked before it runs, emitted for PyTorch and Keras.

The core (spec, loader, checker) is pure Python and never imports a deep-learning framework.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "check_file", "load_spec"]


def load_spec(path, overrides=None):
    """Read, resolve and validate a spec file (see :func:`netspec.spec.load_spec`)."""
    from netspec.spec import load_spec as _load

    return _load(path, overrides)


def check_file(path, overrides=None, *, input_shape=None, batch=1):
    """Load and check a spec file; returns a :class:`netspec.check.CheckedNet`."""
    from netspec.check import check_file as _check_file

    return _check_file(path, overrides, input_shape=input_shape, batch=batch)

"""Moving weights between framework layouts, in one place.

The neutral layout is PyTorch's, per spec layer: ``weight`` (conv OIHW, linear (out, in)),
``bias``, and for batch norm ``running_mean`` / ``running_var``. Keras keeps conv kernels HWIO and
dense kernels (in, out). Flatten needs no reordering: the Keras backend permutes to channels-first
before flattening, so fc6's columns mean the same in both frameworks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TORCH_KEYS = {
    "conv2d": ("weight", "bias"),
    "linear": ("weight", "bias"),
    "batchnorm2d": ("weight", "bias", "running_mean", "running_var"),
}
KERAS_KEYS = {
    "conv2d": ("kernel", "bias"),
    "linear": ("kernel", "bias"),
    "batchnorm2d": ("gamma", "beta", "moving_mean", "moving_variance"),
}


def _present(layer, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The keys a layer really has: no bias when bias is off, no scale/shift when not affine."""
    if layer.kind in ("conv2d", "linear") and not layer.bias:
        return keys[:1]
    if layer.kind == "batchnorm2d" and not layer.affine:
        return keys[2:]
    return keys


def torch_names(layer) -> tuple[str, ...]:
    return _present(layer, TORCH_KEYS.get(layer.kind, ()))


def keras_names(layer) -> tuple[str, ...]:
    return _present(layer, KERAS_KEYS.get(layer.kind, ()))


def to_keras(layer, tensors: dict[str, Any]) -> list[np.ndarray]:
    """PyTorch-layout arrays of one layer -> the list Keras' ``set_weights`` takes."""
    out = []
    for key in torch_names(layer):
        value = np.asarray(tensors[key])
        if key == "weight" and layer.kind == "conv2d":
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif key == "weight" and layer.kind == "linear":
            value = value.T  # (out, in) -> (in, out)
        out.append(np.ascontiguousarray(value))
    return out


def to_torch(layer, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The list Keras' ``get_weights`` returns for one layer -> PyTorch-layout arrays."""
    names = torch_names(layer)
    if len(arrays) != len(names):
        raise ValueError(f"layer '{layer.name}' has {len(arrays)} Keras weights, expected {len(names)}")
    out = {}
    for key, value in zip(names, arrays, strict=True):
        value = np.asarray(value)
        if key == "weight" and layer.kind == "conv2d":
            value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        elif key == "weight" and layer.kind == "linear":
            value = value.T
        out[key] = np.ascontiguousarray(value)
    return out


def misfit(expected: dict[str, tuple[int, ...]], given: dict[str, tuple[int, ...]], source: str, *,
           optional: frozenset[str] | set[str] = frozenset(), what: str = "tensor"):
    """A SpecError explaining every missing, unexpected or mis-shaped entry (``expected`` and
    ``given`` map names to shapes; ``optional`` names may be absent), or None when they fit.
    Every loader of weights calls this before loading anything: weights never load partly."""
    from netspec.errors import SpecError

    missing = sorted(expected.keys() - given.keys() - set(optional))
    unexpected = sorted(given.keys() - expected.keys())
    mismatched = [f"{k}: the model has {_shape(expected[k])}, the file {_shape(given[k])}"
                  for k in sorted(expected.keys() & given.keys()) if tuple(expected[k]) != tuple(given[k])]
    lines = []
    if missing:
        lines.append(f"missing from the file: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        lines.append(f"not in the model: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
    lines += mismatched[:8]
    if len(mismatched) > 8:
        lines.append(f"... and {len(mismatched) - 8} more {what}s of the wrong shape")
    if not lines:
        return None
    return SpecError.single(f"the weights in {source} do not fit the model:\n    " + "\n    ".join(lines),
                            hint="are these weights for this spec (and its num_classes)?")


def _shape(shape) -> str:
    """(1000, 4096) as torch prints it; a list of shapes (a Keras layer's variables) as a list."""
    if shape and isinstance(shape[0], tuple):
        return "[" + ", ".join(map(str, shape)) + "]"
    return str(tuple(shape))

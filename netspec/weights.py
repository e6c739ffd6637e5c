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

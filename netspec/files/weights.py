"""Moving weights between framework layouts, in one place.

The neutral layout is PyTorch's. Each layer class lists its tensors (``Layer.weights``: the
PyTorch key, the Keras variable, and the axis permutation and reshape between them); this module only reads
that list, so a new layer with weights needs nothing here. Flatten needs no reordering: the Keras
backend permutes to channels-first before flattening, so fc6's columns mean the same in both
frameworks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from netspec.errors import WeightsError


def _tensors(checked) -> tuple:
    return checked.layer.weight_tensors(checked.resolved)


def torch_names(checked) -> tuple[str, ...]:
    """A checked layer's PyTorch state-dict keys, in order (its class's ``weights``)."""
    return tuple(w.torch for w in _tensors(checked))


def keras_names(checked) -> tuple[str, ...]:
    """A checked layer's Keras variable names, in ``get_weights`` order."""
    return tuple(w.keras for w in _tensors(checked))


def state_key(prefix: str, tensor: str) -> str:
    """A tensor's state-dict key: the layer's path and the tensor's name (``features.0.weight``), or
    the path alone for a layer that is one learned tensor (``features.1.0.layer_scale``)."""
    return f"{prefix}.{tensor}" if tensor else prefix


def to_keras(checked, tensors: dict[str, Any]) -> list[np.ndarray]:
    """PyTorch-layout arrays of one checked layer -> the list Keras' ``set_weights`` takes."""
    out = []
    for tensor in _tensors(checked):
        out.append(np.ascontiguousarray(tensor.keras_array(np.asarray(tensors[tensor.torch]))))
    return out


def to_torch(checked, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The list Keras' ``get_weights`` returns for one checked layer -> PyTorch-layout arrays."""
    tensors = _tensors(checked)
    if len(arrays) != len(tensors):
        raise ValueError(f"layer '{checked.name}' has {len(arrays)} Keras weights, expected {len(tensors)}")
    out = {}
    for tensor, value in zip(tensors, arrays, strict=True):
        out[tensor.torch] = np.ascontiguousarray(tensor.torch_array(np.asarray(value)))
    return out


def misfit(expected: Mapping[str, tuple[int, ...] | tuple[tuple[int, ...], ...]],
           given: Mapping[str, tuple[int, ...] | tuple[tuple[int, ...], ...]], source: str, *,
           optional: frozenset[str] | set[str] = frozenset(), what: str = "tensor"):
    """A SpecError explaining every missing, unexpected or mis-shaped entry (``expected`` and
    ``given`` map names to shapes; ``optional`` names may be absent), or None when they fit.
    Every loader of weights calls this before loading anything: weights never load partly."""

    missing = sorted(expected.keys() - given.keys() - set(optional))
    unexpected = sorted(given.keys() - expected.keys())
    mismatched = [f"{k}: the model has {_shape(expected[k])}, the file {_shape(given[k])}"
                  for k in sorted(expected.keys() & given.keys()) if tuple(expected[k]) != tuple(given[k])]
    lines = []
    if missing:
        lines.append(f"missing from the file: {_first_eight(missing)}")
    if unexpected:
        lines.append(f"not in the model: {_first_eight(unexpected)}")
    lines += mismatched[:8]
    if len(mismatched) > 8:
        lines.append(f"... and {len(mismatched) - 8} more {what}s of the wrong shape")
    if not lines:
        return None
    return WeightsError.single(f"the weights in {source} do not fit the model:\n    " + "\n    ".join(lines),
                               hint="are these weights for this spec (and its num_classes)?")


def _first_eight(names: list[str]) -> str:
    return ", ".join(names[:8]) + (f" ... and {len(names) - 8} more ({len(names)} in all)" if len(names) > 8 else "")


def _shape(shape) -> str:
    """(1000, 4096) as torch prints it; a list of shapes (a Keras layer's variables) as a list."""
    if shape and isinstance(shape[0], tuple):
        return "[" + ", ".join(map(str, shape)) + "]"
    return str(tuple(shape))


def sequence_parts(checked) -> list[str]:
    """What one checked layer becomes inside a block, which generated code numbers as torchvision
    numbers an ``nn.Sequential``: a padding step when the padding is not the same on both sides
    (frameworks' ops only pad symmetrically), the layer itself, and its activation shorthand."""
    parts = []
    pads = checked.resolved.get("padding")  # (before, after) per spatial axis
    if pads is not None and any(pads[i] != pads[i + 1] for i in range(0, len(pads), 2)):
        parts.append("pad")
    parts.append("layer")
    if getattr(checked.layer, "activation", None):
        parts.append("activation")
    return parts


def state_prefixes(net) -> dict[str, str]:
    """Each layer's path in the PyTorch model, which prefixes its state-dict keys: its own name in
    a flat spec; 'features.3' for the fourth module of block 'features'; the block's name for a
    block that holds one module (as torchvision's ``avgpool``). Both backends key weights by it."""
    if net.spec.blocks is None:
        return {cl.name: cl.name for cl in net.layers}
    prefixes = {}
    for block in net.spec.blocks:
        members = [cl for cl in net.layers if cl.block == block.name]
        position = 0
        for cl in members:
            parts = sequence_parts(cl)
            prefixes[cl.name] = f"{block.name}.{position + parts.index('layer')}"
            position += len(parts)
        if position == 1:
            prefixes[members[0].name] = block.name
    return prefixes

"""Applying a state dict to a generated model, strictly (files are read by netspec.files.state_files)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from netspec.analysis.checker import CheckedNet
from netspec.files.state_files import read_state_dict

__all__ = ["apply_state_dict", "read_state_dict"]


def apply_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, explaining every missing, unexpected or mis-shaped tensor."""
    from netspec.files.weights import misfit

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    error = misfit(expected, {k: tuple(v.shape) for k, v in state.items()}, source)
    if error is not None:
        raise error
    model.load_state_dict(state, strict=True)


def save_neutral_state(model: torch.nn.Module, net: CheckedNet, state: Mapping[str, Any], path: str,
                       source: str) -> None:
    """Set neutral-layout arrays on ``model`` strictly and save its state dict as safetensors.
    The buffers other frameworks do not keep (batch norm's step counter, Swin's relative position
    index, which the model computes) are taken as the model's own."""
    from safetensors.torch import save_file

    from netspec.files.weights import state_key, state_prefixes

    tensors = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()}
    paths = state_prefixes(net)
    own = model.state_dict()
    for cl in net.layers:
        for buffer in cl.layer.torch_only_buffers:
            key = state_key(paths[cl.name], buffer)
            if key in own and key not in tensors:
                tensors[key] = own[key]
    apply_state_dict(model, tensors, source)  # strict: every tensor of the model, and no other
    metadata = {"spec": net.spec.name, "layout": "torch"}
    if any(key.endswith(".num_batches_tracked") for key in tensors):
        metadata["num_batches_tracked"] = ("0: Keras keeps no step counter; a spec's batch norms have a momentum, "
                                           "so it changes nothing")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path, metadata=metadata)

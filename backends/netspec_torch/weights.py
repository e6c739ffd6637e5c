"""Applying a state dict to a generated model, strictly (files are read by netspec.state_files)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from netspec.state_files import read_state_dict

__all__ = ["apply_state_dict", "read_state_dict"]


def apply_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, explaining every missing, unexpected or mis-shaped tensor."""
    from netspec.weights import misfit

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    error = misfit(expected, {k: tuple(v.shape) for k, v in state.items()}, source)
    if error is not None:
        raise error
    model.load_state_dict(state, strict=True)

"""Reading PyTorch weight files safely, for either backend: safetensors, or a plain state dict
read with ``torch.load(weights_only=True)`` (never an arbitrary pickle). torch is imported only to
read a .pt/.pth file, so a Keras-only install can still read .safetensors."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from netspec.errors import SpecError

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def read_state_dict(path: str | Path, *, as_numpy: bool = False) -> dict[str, Any]:
    """The tensors of a weights file by state-dict key: torch tensors, or NumPy arrays with
    ``as_numpy`` (then a .safetensors file is read without torch)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError.single(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError

        if as_numpy:
            from safetensors.numpy import load_file
        else:
            from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise SpecError.single(f"cannot read {path} as safetensors: {exc}",
                                   hint="the file may be truncated or not a safetensors file") from None
    if path.suffix in TORCH_SUFFIXES:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise SpecError.single(f"reading {path.name} (a PyTorch file) needs torch",
                                   hint='pip install -e ".[torch]", or pass .safetensors weights')
        import torch

        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except OSError as exc:  # unreadable: permissions, an I/O error
            raise SpecError.single(f"cannot read {path}: {exc.strerror or exc}",
                                   hint="check the file's permissions") from None
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SpecError.single(
                f"refusing to load {path}: it is not a plain state dict of tensors ({first})",
                hint="netspec reads PyTorch files with weights_only=True and never runs pickled code; "
                     "save model.state_dict() or use safetensors") from None
        for key in ("state_dict", "model"):
            if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
        if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            # a training run's state.pt (optimizer, RNG, loop) sits beside its weights
            checkpoint = isinstance(loaded, Mapping) and {"loop", "optimizer", "rng"} <= set(loaded)
            raise SpecError.single(
                f"{path} does not hold a state dict (a mapping of names to tensors)",
                hint="this is a training run's optimizer and loop state; its weights are the checkpoint's "
                     "weights.safetensors, or the run's checkpoints/best.safetensors" if checkpoint else None)
        if as_numpy:
            return {key: value.detach().cpu().numpy() for key, value in loaded.items()}
        return dict(loaded)
    raise SpecError.single(f"unsupported weights file {path.name}",
                           hint=f"use .safetensors or a PyTorch state dict ({', '.join(TORCH_SUFFIXES)})")

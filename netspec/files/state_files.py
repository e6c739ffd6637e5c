"""Reading PyTorch weight files safely, for either backend: safetensors, or a plain state dict
read with ``torch.load(weights_only=True)`` (never an arbitrary pickle). torch is imported only to
read a .pt/.pth file, so a Keras-only install can still read .safetensors."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from netspec.errors import SetupError, WeightsError

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
MAX_HEADER_BYTES = 100 << 20  # the safetensors format's own bound on its JSON header


def weights_budget(net) -> int:
    """The most bytes a weights file for ``net`` may hold: its tensors in float64, the int64
    tables PyTorch keeps with them (an attention's relative position index), and a margin.
    Memory follows the model, never what a file claims."""
    tables = sum(cl.layer.torch_buffer_elements(cl.resolved) for cl in net.layers)
    return 8 * (net.totals.params + tables) + (1 << 20)


def safetensors_payload(path: Path) -> int:
    """The bytes a .safetensors file's tensors take, read from its header alone (8 bytes of length,
    then JSON), so a file that claims 64 GiB is measured before anything is allocated."""
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= MAX_HEADER_BYTES:
                raise ValueError(f"a header of {length:,} bytes")
            header = json.loads(handle.read(length))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
        return max((int(end) for end in ends), default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise WeightsError.single(f"cannot read {path} as safetensors: {exc}",
                                  hint="the file may be truncated or not a safetensors file") from None


def read_state_dict(path: str | Path, *, as_numpy: bool = False, budget: int | None = None) -> dict[str, Any]:
    """The tensors of a weights file by state-dict key: torch tensors, or NumPy arrays with
    ``as_numpy`` (then a .safetensors file is read without torch). ``budget`` bounds the bytes a
    safetensors file's tensors may take (:func:`weights_budget`)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError.single(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        payload = safetensors_payload(path)
        if budget is not None and payload > budget:
            raise WeightsError.single(f"{path} holds {payload:,} bytes of tensors, more than this network's weights "
                                      f"could take ({budget:,} bytes)",
                                      hint="these are the weights of another, larger network, or a damaged file")
        from safetensors import SafetensorError

        load_file: Callable[[str], dict[str, Any]]
        if as_numpy:
            from safetensors.numpy import load_file
        else:
            from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError.single(f"cannot read {path} as safetensors: {exc}",
                                      hint="the file may be truncated or not a safetensors file") from None
    if path.suffix in TORCH_SUFFIXES:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise SetupError.single(f"reading {path.name} (a PyTorch file) needs torch",
                                    hint='pip install -e ".[torch]", or pass .safetensors weights')
        import torch

        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except OSError as exc:  # unreadable: permissions, an I/O error
            raise WeightsError.single(f"cannot read {path}: {exc.strerror or exc}",
                                      hint="check the file's permissions") from None
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError.single(
                f"refusing to load {path}: it is not a plain state dict of tensors ({first})",
                hint="netspec reads PyTorch files with weights_only=True and never runs pickled code; "
                     "save model.state_dict() or use safetensors") from None
        for key in ("state_dict", "model"):
            if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
        if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            # a training run's state.pt (optimizer, RNG, loop) sits beside its weights
            checkpoint = isinstance(loaded, Mapping) and {"loop", "optimizer", "rng"} <= set(loaded)
            raise WeightsError.single(
                f"{path} does not hold a state dict (a mapping of names to tensors)",
                hint="this is a training run's optimizer and loop state; its weights are the checkpoint's "
                     "weights.safetensors, or the run's checkpoints/best.safetensors" if checkpoint else None)
        if as_numpy:
            return {key: value.detach().cpu().numpy() for key, value in loaded.items()}
        return dict(loaded)
    raise WeightsError.single(f"unsupported weights file {path.name}",
                              hint=f"use .safetensors or a PyTorch state dict ({', '.join(TORCH_SUFFIXES)})")

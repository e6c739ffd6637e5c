"""Moving trained weights between backends: ``netspec convert SPEC --weights W --to keras|torch``.

PyTorch weights (.safetensors, .pt/.pth) become Keras weights (.weights.h5); Keras weights
(.weights.h5, .keras) become a PyTorch-layout .safetensors. The layout rules live in
netspec.weights; this module only wires the backends together."""

from __future__ import annotations

from pathlib import Path

from netspec.backend import Artifact, get_backend
from netspec.check import CheckedNet
from netspec.errors import SpecError

KERAS_SUFFIXES = (".weights.h5", ".keras")


def is_keras_weights(path: Path) -> bool:
    return path.name.endswith(KERAS_SUFFIXES)


def convert(net: CheckedNet, weights: Path, to: str, out_dir: Path, *, force: bool = False) -> list[Artifact]:
    weights = Path(weights)
    if not weights.is_file():
        raise SpecError.single(f"weights file not found: {weights}")
    if to == "keras":
        if is_keras_weights(weights):
            raise SpecError.single(f"{weights} already holds Keras weights", hint="use --to torch")
        return get_backend("keras").export(net, out_dir, ["weights"], weights=weights, force=force)
    if to == "torch":
        if not is_keras_weights(weights):
            raise SpecError.single(f"{weights} is not a Keras weights file ({', '.join(KERAS_SUFFIXES)})",
                                   hint="PyTorch weights are already in the torch layout; use --to keras")
        import torch
        from safetensors.torch import save_file

        from netspec.backend import output_paths
        from netspec.fileio import atomic_path
        from netspec_keras import torch_layout_state

        keras_model = get_backend("keras").load(net, weights=weights)
        torch_model = get_backend("torch").load(net)
        state = {k: torch.from_numpy(v) for k, v in torch_layout_state(keras_model, net).items()}
        torch_model.load_state_dict(state, strict=False)  # num_batches_tracked has no Keras twin
        path = output_paths(net, out_dir, ["safetensors"], {"safetensors": ".safetensors"}, "torch",
                            force=force)["safetensors"]
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in torch_model.state_dict().items()}, tmp,
                      metadata={"spec": net.spec.name, "layout": "torch"})
        return [Artifact(path, "safetensors")]
    raise SpecError.single(f"--to must be 'torch' or 'keras', not {to!r}")

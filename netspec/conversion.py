"""Moving trained weights between backends: ``netspec convert SPEC --weights W --to keras|torch``.

PyTorch weights (.safetensors, .pt/.pth) become Keras weights (.weights.h5); Keras weights
(.weights.h5, .keras) become a PyTorch-layout .safetensors. The output is named after the weights
file it converts, with the new ending (``trained.pth`` -> ``trained.weights.h5``,
``alexnet.weights.h5`` -> ``alexnet.safetensors``), so it never collides with what ``netspec
export`` writes for the spec. Loading is strict: weights that do not fit the spec exactly (a
missing, unexpected or mis-shaped tensor) are explained and nothing is written. The layout rules
live in netspec.weights; this module only wires the backends together."""

from __future__ import annotations

from pathlib import Path

from netspec.backend import Artifact, get_backend, require_memory
from netspec.checker import CheckedNet
from netspec.errors import SpecError
from netspec.outputs import Outputs, check_target

KERAS_SUFFIXES = (".weights.h5", ".keras")
TORCH_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
OUTPUT_SUFFIX = {"keras": ".weights.h5", "torch": ".safetensors"}
# the Keras model, the weights read, a converted copy, and the torch model when converting to torch
MEMORY_COPIES = {"keras": 3, "torch": 4}


def is_keras_weights(path: Path) -> bool:
    return path.name.endswith(KERAS_SUFFIXES)


def converted_name(weights: Path, to: str) -> str:
    """``trained.pth`` -> ``trained.weights.h5`` (to keras); ``x.weights.h5`` -> ``x.safetensors``."""
    stem = weights.name
    for suffix in (*KERAS_SUFFIXES, *TORCH_SUFFIXES):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem + OUTPUT_SUFFIX[to]


def convert(net: CheckedNet, weights: Path, to: str, out_dir: Path, *, force: bool = False) -> list[Artifact]:
    weights = Path(weights)
    if to not in OUTPUT_SUFFIX:
        raise SpecError.single(f"the backend to convert to must be 'torch' or 'keras', not {to!r}")
    if not weights.is_file():
        raise SpecError.single(f"weights file not found: {weights}")
    if to == "keras" and is_keras_weights(weights):
        raise SpecError.single(f"{weights} already holds Keras weights", hint="use --to torch")
    if to == "torch" and not is_keras_weights(weights):
        raise SpecError.single(f"{weights} is not a Keras weights file ({', '.join(KERAS_SUFFIXES)})",
                               hint="PyTorch weights are already in the torch layout; use --to keras")
    target = Path(out_dir) / converted_name(weights, to)  # never the weights themselves: the ending differs
    with Outputs(force=force) as out:
        check_target(target, force=force)
        require_memory(net, f"converting {weights.name} to {to}", MEMORY_COPIES[to])
        keras_backend = get_backend("keras")
        torch_backend = get_backend("torch") if to == "torch" else None
        keras_model = keras_backend.load(net, weights=weights)  # strict: explains any misfit, loads nothing
        out.folder(out_dir)
        tmp = out.file(target)
        if to == "keras":
            keras_model.save_weights(tmp)
            return [Artifact(target, "weights")]
        _save_torch_layout(net, keras_model, torch_backend, tmp, str(weights))
    return [Artifact(target, "safetensors")]


def _save_torch_layout(net: CheckedNet, keras_model, torch_backend, path: str, source: str) -> None:
    import torch
    from safetensors.torch import save_file

    from netspec_keras import torch_layout_state
    from netspec_torch.weights import apply_state_dict

    torch_model = torch_backend.load(net)
    state = {k: torch.from_numpy(v) for k, v in torch_layout_state(keras_model, net).items()}
    for key, value in torch_model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = value  # batch norm's step counter has no Keras twin
    apply_state_dict(torch_model, state, source)  # strict: every tensor of the model, and no other
    metadata = {"spec": net.spec.name, "layout": "torch"}
    if any(key.endswith(".num_batches_tracked") for key in state):
        metadata["num_batches_tracked"] = ("0: Keras keeps no step counter; a spec's batch norms have a momentum, "
                                           "so it changes nothing")
    save_file({k: v.contiguous() for k, v in torch_model.state_dict().items()}, path, metadata=metadata)

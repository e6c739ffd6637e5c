"""Moving trained weights between backends: ``netspec convert SPEC --weights W --to keras|torch``.

PyTorch weights (.safetensors, .pt/.pth) become Keras weights (.weights.h5); Keras weights
(.weights.h5, .keras) become a PyTorch-layout .safetensors. The output is named after the weights
file it converts, with the new ending (``trained.pth`` -> ``trained.weights.h5``,
``alexnet.weights.h5`` -> ``alexnet.safetensors``), so it never collides with what ``netspec
export`` writes for the spec. Loading is strict: weights that do not fit the spec exactly (a
missing, unexpected or mis-shaped tensor) are explained and nothing is written. The layout rules
live in netspec.files.weights; this module only wires the backends together."""

from __future__ import annotations

from pathlib import Path

from netspec.analysis.checker import CheckedNet
from netspec.codegen.backend import Artifact, Backend, get_backend, require_memory
from netspec.errors import UsageError, WeightsError
from netspec.files.outputs import Outputs, check_target

BACKENDS = ("torch", "keras")
# the model the weights are read into, the neutral copy, the model they are set on, and a copy
# the framework makes while saving
MEMORY_COPIES = 4


def _reader_of(weights: Path, backends: dict[str, Backend]) -> str | None:
    """The backend whose weights files end as ``weights`` does (the longest ending wins:
    ``.weights.h5`` before ``.h5``)."""
    endings = [(len(ending), name) for name, backend in backends.items() for ending in backend.weights_read
               if weights.name.endswith(ending)]
    return max(endings)[1] if endings else None


def converted_name(weights: Path, backends: dict[str, Backend], to: str) -> str:
    """``trained.pth`` -> ``trained.weights.h5`` (to keras); ``x.weights.h5`` -> ``x.safetensors``."""
    stem = weights.name
    for ending in sorted((e for b in backends.values() for e in b.weights_read), key=len, reverse=True):
        if stem.endswith(ending) and len(stem) > len(ending):
            stem = stem[: -len(ending)]
            break
    return stem + backends[to].weights_written


def convert(net: CheckedNet, weights: Path, to: str, out_dir: Path, *, force: bool = False) -> list[Artifact]:
    """Read ``weights`` with the backend that reads its kind of file, and write them with ``to``'s,
    through the neutral layout (netspec.files.weights): each backend checks them strictly against the
    spec, and neither knows the other."""
    weights = Path(weights)
    if to not in BACKENDS:
        raise UsageError.single(f"the backend to convert to must be 'torch' or 'keras', not {to!r}")
    if not weights.is_file():
        raise WeightsError.single(f"weights file not found: {weights}")
    backends = {name: get_backend(name) for name in BACKENDS}
    reader = _reader_of(weights, backends)
    if reader is None:
        endings = ", ".join(e for b in backends.values() for e in b.weights_read)
        raise UsageError.single(f"{weights} is not a weights file netspec reads ({endings})")
    if reader == to:
        other = next(name for name in BACKENDS if name != to)
        raise UsageError.single(f"{weights} already holds {'Keras' if to == 'keras' else 'PyTorch'} weights",
                                hint=f"use --to {other}")
    target = Path(out_dir) / converted_name(weights, backends, to)  # never the weights: the ending differs
    with Outputs(force=force) as out:
        check_target(target, force=force)
        require_memory(net, f"converting {weights.name} to {to}", MEMORY_COPIES)
        state = backends[reader].read_weights(net, weights)  # strict: explains any misfit, reads nothing more
        out.folder(out_dir)
        backends[to].write_weights(net, state, out.file(target), str(weights))
    return [Artifact(target, "weights" if to == "keras" else "safetensors")]

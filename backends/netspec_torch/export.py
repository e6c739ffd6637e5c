"""Writing a spec's torch model to disk: source, safetensors weights, torch.export (.pt2), ONNX.

Every file is written to a temporary name in the output folder and renamed into place, so a
failed export never leaves a half-written file; existing files are only replaced with ``force``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

from netspec import __version__
from netspec.backend import Artifact, output_paths
from netspec.check import CheckedNet
from netspec.errors import SpecError
from netspec.fileio import atomic_path, atomic_write_text

SUFFIXES = {"source": ".py", "safetensors": ".safetensors", "pt2": ".pt2", "onnx": ".onnx"}
MAX_EXPORT_BATCH = 4096


def export(backend, net: CheckedNet, out_dir: Path, formats: list[str], *, weights=None,
           force: bool = False) -> list[Artifact]:
    paths = output_paths(net, out_dir, formats, SUFFIXES, "torch", force=force)
    source = backend.emit(net)
    model = backend.load(net, source, weights=weights).eval()
    written = []
    for fmt, path in paths.items():
        if fmt == "source":
            atomic_write_text(path, source)
        else:
            with atomic_path(path) as tmp:
                WRITERS[fmt](model, net, tmp)
        written.append(Artifact(path, fmt))
    return written


def _save_safetensors(model: torch.nn.Module, net: CheckedNet, path: str) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, path, metadata={"netspec_version": __version__, "spec": net.spec.name, "layout": "torch"})


def _dynamic_batch():
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    return {"x": {0: batch}}


def _exported(model: torch.nn.Module, net: CheckedNet):
    from netspec_torch import example_input

    return torch.export.export(model, (example_input(net, 2),), dynamic_shapes=_dynamic_batch())


def _save_pt2(model: torch.nn.Module, net: CheckedNet, path: str) -> None:
    torch.export.save(_exported(model, net), path)


def _save_onnx(model: torch.nn.Module, net: CheckedNet, path: str) -> None:
    from netspec_torch import example_input

    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise SpecError.single("ONNX export needs the onnx extra", hint='pip install -e ".[onnx]"') from None
    with contextlib.redirect_stdout(sys.stderr):  # the exporter reports its progress on stdout
        program = torch.onnx.export(model, (example_input(net, 2),), dynamo=True, verbose=False,
                                    dynamic_shapes=_dynamic_batch(), input_names=["x"], output_names=["y"])
    program.save(path)


WRITERS = {"safetensors": _save_safetensors, "pt2": _save_pt2, "onnx": _save_onnx}

"""Writing a spec's torch model to disk: source, safetensors weights, torch.export (.pt2), ONNX.

All the files of one export are written to temporary names in the output folder and renamed into
place together when every one of them has been written (netspec.files.outputs), so a failed export
leaves nothing behind; existing files are only replaced with ``force``. Source alone never builds
the model; the other formats first check that the machine has the memory the model needs.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from netspec import __version__
from netspec.analysis.checker import CheckedNet
from netspec.codegen.backend import Artifact, model_for_export, output_paths
from netspec.errors import SetupError
from netspec.files.outputs import Outputs

if TYPE_CHECKING:
    import torch

SUFFIXES = {"source": ".py", "safetensors": ".safetensors", "pt2": ".pt2", "onnx": ".onnx"}
# copies of the weights each format holds in memory while it is written, beside the model itself
# (measured with AlexNet: safetensors writes from the tensors; torch.export and the ONNX exporter
# trace and serialize, and the .pt2 is assembled in memory)
MEMORY_COPIES = {"safetensors": 1, "pt2": 3, "onnx": 4}
MAX_EXPORT_BATCH = 4096


def export(backend, net: CheckedNet, out_dir: Path, formats: list[str], *, weights=None,
           force: bool = False) -> list[Artifact]:
    with Outputs(force=force) as out:
        paths = output_paths(net, out, out_dir, formats, SUFFIXES, "torch")
        source = backend.emit(net)
        model = model_for_export(backend, net, source, paths, weights=weights, memory_copies=MEMORY_COPIES,
                                 weight_formats="safetensors (or pt2, onnx)")
        if model is not None:
            model.eval()
        for fmt, path in paths.items():
            tmp = out.file(path)
            if fmt == "source":
                Path(tmp).write_text(source, encoding="utf-8")
            else:
                WRITERS[fmt](model, net, tmp)
    return [Artifact(path, fmt) for fmt, path in paths.items()]


def _save_safetensors(model: torch.nn.Module, net: CheckedNet, path: str) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, path, metadata={"netspec_version": __version__, "spec": net.spec.name, "layout": "torch"})


def _dynamic_batch():
    import torch

    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    return {"x": {0: batch}}


def _exported(model: torch.nn.Module, net: CheckedNet):
    import torch

    from netspec_torch import example_input

    return torch.export.export(model, (example_input(net, 2),), dynamic_shapes=_dynamic_batch())


def _save_pt2(model: torch.nn.Module, net: CheckedNet, path: str) -> None:
    # into memory first: torch's zip writer, failing on a full disk or a file-size limit, throws
    # again from its destructor, which aborts the process; a plain file write fails cleanly
    import torch

    buffer = io.BytesIO()
    torch.export.save(_exported(model, net), buffer)
    with open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def _save_onnx(model: torch.nn.Module, net: CheckedNet, path: str) -> None:
    import torch

    from netspec_torch import example_input

    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise SetupError.single("ONNX export needs the onnx extra", hint='pip install -e ".[onnx]"') from None
    with contextlib.redirect_stdout(sys.stderr):  # the exporter reports its progress on stdout
        program = torch.onnx.export(model, (example_input(net, 2),), dynamo=True, verbose=False,
                                    dynamic_shapes=_dynamic_batch(), input_names=["x"], output_names=["y"])
    assert program is not None  # None only from the legacy exporter (dynamo=False)
    program.save(path)


WRITERS = {"safetensors": _save_safetensors, "pt2": _save_pt2, "onnx": _save_onnx}

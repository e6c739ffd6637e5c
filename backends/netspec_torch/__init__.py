"""The PyTorch backend: readable nn.Module source from a spec, the live model built from that very
source, and exports (source, safetensors, torch.export .pt2, ONNX)."""

from __future__ import annotations

import linecache
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netspec.backend import Artifact
from netspec.check import CheckedNet
from netspec.errors import SpecError
from netspec.render import module_name
from netspec_torch.codegen import TorchPlan, render
from netspec_torch.weights import apply_state_dict, read_state_dict

# Layer or block names that would shadow nn.Module's own attributes (forward, training, ...).
RESERVED_NAMES = frozenset(name for name in dir(nn.Module()) if not name.startswith("__"))


class TorchBackend:
    name = "torch"
    export_formats = ("source", "safetensors", "pt2", "onnx")

    def emit(self, net: CheckedNet) -> str:
        return render(net, RESERVED_NAMES)[0]

    def plan(self, net: CheckedNet) -> TorchPlan:
        """Where each spec layer's parameters live in the generated module."""
        return render(net, RESERVED_NAMES)[1]

    def load(self, net: CheckedNet, source: str | None = None, weights: str | Path | None = None) -> nn.Module:
        source, torch_plan = (source, self.plan(net)) if source else render(net, RESERVED_NAMES)
        namespace = execute_source(source, module_name(net.spec.name))
        model = namespace[torch_plan.class_name]()
        if weights is not None:
            apply_state_dict(model, read_state_dict(weights), str(weights))
        return model

    def export(self, net: CheckedNet, out_dir: Path, formats: list[str], *, weights: str | Path | None = None,
               force: bool = False) -> list[Artifact]:
        from netspec_torch.export import export

        return export(self, net, Path(out_dir), formats, weights=weights, force=force)


def execute_source(source: str, name: str) -> dict[str, Any]:
    """Run generated source as module ``netspec_generated.<name>``. The source is netspec's own
    output, rendered only from validated values; registering it with linecache keeps tracebacks and
    torch.compile's source lookups readable."""
    filename = f"<netspec-generated {name}.py>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = types.ModuleType(f"netspec_generated.{name}")
    module.__file__ = filename
    sys.modules[module.__name__] = module  # so inspect, pickle and torch.compile can find the class
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102
    return module.__dict__


def example_input(net: CheckedNet, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(0))


__all__ = ["RESERVED_NAMES", "SpecError", "TorchBackend", "example_input", "execute_source"]

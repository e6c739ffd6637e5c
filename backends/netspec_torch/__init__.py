"""The PyTorch backend: readable nn.Module source from a spec, the live model built from that very
source, and exports (source, safetensors, torch.export .pt2, ONNX). torch is imported only when a
model is built: source and planning (which module holds which layer) work without it installed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspec.codegen.backend import INSTALL_HINTS, Artifact, load_triton_safely, require_modules
from netspec.errors import SetupError
from netspec.files.state_files import TORCH_SUFFIXES
from netspec_torch.names import MODULE_ATTRIBUTES

if TYPE_CHECKING:  # code generation is imported when used: checking a spec reads only names.py
    from netspec.analysis.checker import CheckedNet
    from netspec_torch.codegen import TorchPlan


def reserved_names() -> frozenset[str]:
    """Layer or block names that would shadow nn.Module's own attributes (forward, training, ...):
    a static set, so emitting source needs no torch (the check refuses them already; the tests
    compare the set with the installed torch)."""
    return MODULE_ATTRIBUTES


class TorchBackend:
    name = "torch"
    export_formats = ("source", "safetensors", "pt2", "onnx")
    bench_loops = ("netspec", "eager-fp32", "compiled-bf16")

    def __init__(self) -> None:
        load_triton_safely()  # before torch, which may load it, whether or not TensorFlow came first

    def emit(self, net: CheckedNet) -> str:
        from netspec_torch.codegen import render

        return render(net, reserved_names())[0]

    def plan(self, net: CheckedNet) -> TorchPlan:
        """Where each spec layer's parameters live in the generated module."""
        from netspec_torch.codegen import render

        return render(net, reserved_names())[1]

    def load(self, net: CheckedNet, source: str | None = None, weights: str | Path | None = None) -> Any:
        _need_torch("building the PyTorch model")
        from netspec.codegen.render import execute_generated, module_name
        from netspec.files.state_files import weights_budget
        from netspec_torch.codegen import render
        from netspec_torch.weights import apply_state_dict, read_state_dict

        source, torch_plan = (source, self.plan(net)) if source else render(net, reserved_names())
        model = execute_generated(source, module_name(net.spec.name))[torch_plan.class_name]()
        if weights is not None:
            apply_state_dict(model, read_state_dict(weights, budget=weights_budget(net)), str(weights))
        return model

    training_switches = ("device_data", "channels_last", "bf16", "compile", "uniform_dropout")
    version_packages = ("torch", "torchvision")
    data_parallel = True

    def process(self) -> tuple[int, int]:
        """torchrun's RANK and WORLD_SIZE (netspec_torch.distributed joins the group)."""
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))

    def trains_in_host_memory(self, device: str) -> bool:
        import importlib.util

        if device == "cpu" or importlib.util.find_spec("torch") is None:  # training itself says what is missing
            return True
        from netspec_torch.trainer import pick_device

        return pick_device(device).type == "cpu"

    def train(self, net: CheckedNet, options, run, console=None) -> list[dict]:
        """Train with the spec's recipe into ``run`` (a RunDir); returns the metrics records."""
        _need_torch("training")
        from netspec_torch.distributed import leave, world_from_env
        from netspec_torch.trainer import TorchTrainer

        world = world_from_env()  # several processes under torchrun, else one
        try:
            trainer = TorchTrainer(self, net, options, run, console, world=world)
            if options.resume:
                trainer.restore()
            return trainer.fit()
        finally:
            leave(world)

    def bench(self, net: CheckedNet, settings) -> tuple[list, str, dict[str, str]]:
        """Training throughput (netspec.train.bench): the result rows, the device's name, versions."""
        _need_torch("benchmarking")
        from netspec_torch.bench import bench

        return bench(self, net, settings)

    def export(self, net: CheckedNet, out_dir: Path, formats: list[str], *, weights: str | Path | None = None,
               force: bool = False) -> list[Artifact]:
        from netspec_torch.export import export

        return export(self, net, Path(out_dir), formats, weights=weights, force=force)

    weights_read = (".safetensors", *TORCH_SUFFIXES)
    weights_written = ".safetensors"

    def read_weights(self, net: CheckedNet, path: Path) -> dict[str, Any]:
        model = self.load(net, weights=path)  # strict: explains any misfit, loads nothing
        return {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}

    def write_weights(self, net: CheckedNet, state: Mapping[str, Any], path: str, source: str) -> None:
        _need_torch("writing PyTorch weights")
        from netspec_torch.weights import save_neutral_state

        save_neutral_state(self.load(net), net, state, path, source)


def _need_torch(what: str) -> None:
    """A clear error when PyTorch is missing: this backend renders source without it."""
    try:
        require_modules("torch", "torch", "safetensors")
    except ImportError as exc:
        raise SetupError.single(f"{what} needs PyTorch: {exc}",
                                hint=f'{INSTALL_HINTS["torch"]} (source export works without it)') from None


def example_input(net: CheckedNet, batch: int = 1):
    import torch

    return torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(0))


__all__ = ["TorchBackend", "example_input", "reserved_names"]

"""The Keras 3 backend: a standalone function building a functional keras.Model (channels-last),
the live model built from that very source, weights moved from and to PyTorch's layout, and
exports (source, .keras, Keras weights). The generated code uses only keras and keras.ops, so it
runs on the TensorFlow, JAX and torch Keras backends."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from netspec.backend import Artifact, load_triton_safely, require_modules
from netspec.check import CheckedNet
from netspec.errors import SpecError
from netspec.render import execute_generated, module_name
from netspec.weights import keras_names, to_keras, to_torch
from netspec_keras.codegen import KerasPlan, render

KERAS_WEIGHTS_SUFFIX = ".weights.h5"
# what TensorFlow's native libraries print while they load, whatever TF_CPP_MIN_LOG_LEVEL says
# (each of its two libraries once: the lines came twice)
TENSORFLOW_LOAD_NOISE = ("All log messages before absl::InitializeLog() is called",
                         "oneDNN custom operations are on", "cpu_feature_guard.cc",
                         "To enable the following instructions:", "Unable to register cuDNN factory",
                         "Unable to register cuFFT factory", "Unable to register cuBLAS factory",
                         "computation placer already registered", "TF-TRT Warning", "Could not find cuda drivers")


def import_keras():
    """Import keras (and with it TensorFlow) quietly and safely.

    Triton (used by torch.export/compile, torchvision) is loaded first so that both can live in
    one process, also when the caller imported TensorFlow before netspec (see
    netspec.backend.load_triton_safely). The native libraries' start-up lines are dropped unless
    the user set TF_CPP_MIN_LOG_LEVEL themselves."""
    load_triton_safely()
    if "keras" in sys.modules:
        import keras

        return keras
    quiet = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_stderr_filtered(TENSORFLOW_LOAD_NOISE if quiet else ()):
        import keras
    return keras


@contextmanager
def _native_stderr_filtered(noise: tuple[str, ...]):
    """Capture what native code writes to file descriptor 2 meanwhile, and pass on every line
    that contains none of ``noise``."""
    if not noise:
        yield
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().splitlines(keepends=True)
                    if not any(n.encode() in line for n in noise)]
            if kept:
                os.write(2, b"".join(kept))


class KerasBackend:
    name = "keras"
    export_formats = ("source", "keras", "weights", "savedmodel")

    def __init__(self) -> None:
        require_modules("keras", "keras", "numpy")

    def emit(self, net: CheckedNet) -> str:
        return render(net)[0]

    def plan(self, net: CheckedNet) -> KerasPlan:
        return render(net)[1]

    def load(self, net: CheckedNet, source: str | None = None, weights: str | Path | None = None) -> Any:
        import_keras()
        source, keras_plan = (source, self.plan(net)) if source else render(net)
        model = execute_generated(source, module_name(net.spec.name))[keras_plan.function_name]()
        if weights is not None:
            load_any_weights(model, net, Path(weights))
        return model

    def train(self, net: CheckedNet, options, run, console=None) -> list[dict]:
        """Train with the spec's recipe into ``run`` (a RunDir); returns the metrics records."""
        from netspec_keras.trainer import KerasTrainer

        trainer = KerasTrainer(self, net, options, run, console)
        if options.resume:
            trainer.restore()
        return trainer.fit()

    def bench(self, net: CheckedNet, settings) -> tuple[list, str, dict[str, str]]:
        """Training throughput (netspec.bench): the result rows, the device's name, versions."""
        from netspec_keras.bench import bench

        return bench(self, net, settings)

    def export(self, net: CheckedNet, out_dir: Path, formats: list[str], *, weights: str | Path | None = None,
               force: bool = False) -> list[Artifact]:
        from netspec_keras.export import export

        return export(self, net, Path(out_dir), formats, weights=weights, force=force)


def set_from_torch_layout(model, net: CheckedNet, state: dict[str, Any]) -> None:
    """Copy PyTorch-layout arrays, keyed as in the torch backend's state dict, into ``model``."""
    from netspec_torch.codegen import plan as torch_plan

    paths = torch_plan(net).module_paths
    for cl in net.layers:
        names = keras_names(cl.layer)
        if not names:
            continue
        tensors = {key: state[f"{paths[cl.name]}.{key}"] for key in _torch_keys(cl, state, paths)}
        model.get_layer(cl.name).set_weights(to_keras(cl.layer, tensors))


def _torch_keys(cl, state, paths):
    from netspec.weights import torch_names

    keys = torch_names(cl.layer)
    missing = [f"{paths[cl.name]}.{k}" for k in keys if f"{paths[cl.name]}.{k}" not in state]
    if missing:
        raise SpecError.single(f"the weights lack {', '.join(missing)} for layer '{cl.name}'",
                               hint="are these weights for this spec?")
    return keys


def torch_layout_state(model, net: CheckedNet) -> dict[str, Any]:
    """The model's weights in PyTorch's layout, keyed as the torch backend's state dict."""
    from netspec_torch.codegen import plan as torch_plan

    paths = torch_plan(net).module_paths
    state = {}
    for cl in net.layers:
        if keras_names(cl.layer):
            for key, value in to_torch(cl.layer, model.get_layer(cl.name).get_weights()).items():
                state[f"{paths[cl.name]}.{key}"] = value
    return state


def load_any_weights(model, net: CheckedNet, path: Path) -> None:
    """Keras weights (.weights.h5, .keras) load natively; PyTorch state dicts (.safetensors,
    .pt/.pth) are converted from PyTorch's layout."""
    if not path.is_file():
        raise SpecError.single(f"weights file not found: {path}")
    name = path.name
    if name.endswith(KERAS_WEIGHTS_SUFFIX) or path.suffix == ".keras":
        try:
            model.load_weights(str(path))
        except (ValueError, OSError) as exc:
            raise SpecError.single(f"the Keras weights in {path} do not fit the model: {exc}") from None
        return
    from netspec_torch.weights import read_state_dict

    state = {k: v.detach().cpu().numpy() for k, v in read_state_dict(path).items()}
    set_from_torch_layout(model, net, state)


__all__ = ["KerasBackend", "import_keras", "load_any_weights", "set_from_torch_layout", "torch_layout_state"]

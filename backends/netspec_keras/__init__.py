"""The Keras 3 backend: a standalone function building a functional keras.Model (channels-last),
the live model built from that very source, weights moved from and to PyTorch's layout, and
exports (source, .keras, Keras weights). The generated code uses only keras and keras.ops, so it
runs on the TensorFlow, JAX and torch Keras backends."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspec.codegen.backend import INSTALL_HINTS, Artifact, load_triton_safely, require_modules
from netspec.errors import SetupError, WeightsError

if TYPE_CHECKING:  # code generation is imported when used: checking a spec reads only names.py
    from netspec.analysis.checker import CheckedNet
    from netspec_keras.codegen import KerasPlan

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
    netspec.codegen.backend.load_triton_safely). The native libraries' start-up lines are dropped unless
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
    bench_loops = ("netspec", "keras-fit", "keras-compiled", "keras-xla")

    def __init__(self) -> None:
        # source is rendered without Keras (for another machine, or to read); building needs it
        require_modules("keras", "numpy")

    def emit(self, net: CheckedNet) -> str:
        from netspec_keras.codegen import render

        return render(net)[0]

    def plan(self, net: CheckedNet) -> KerasPlan:
        from netspec_keras.codegen import render

        return render(net)[1]

    def load(self, net: CheckedNet, source: str | None = None, weights: str | Path | None = None) -> Any:
        _need_keras("building the Keras model")
        import_keras()
        from netspec.codegen.render import execute_generated, module_name
        from netspec_keras.codegen import render

        source, keras_plan = (source, self.plan(net)) if source else render(net)
        model = execute_generated(source, module_name(net.spec.name))[keras_plan.function_name]()
        if weights is not None:
            load_any_weights(model, net, Path(weights))
        return model

    training_switches = ("bf16",)  # mixed_bfloat16
    version_packages = ("keras", "tensorflow-cpu", "tensorflow", "jax")
    data_parallel = False

    def process(self) -> tuple[int, int]:
        return 0, 1

    def trains_in_host_memory(self, device: str) -> bool:
        import importlib.util

        if device == "cpu" or importlib.util.find_spec("tensorflow") is None:  # training itself says what is missing
            return True
        import tensorflow as tf

        return not tf.config.list_physical_devices("GPU")

    def train(self, net: CheckedNet, options, run, console=None) -> list[dict]:
        """Train with the spec's recipe into ``run`` (a RunDir); returns the metrics records."""
        _need_keras("training with Keras")
        from netspec_keras.trainer import KerasTrainer

        trainer = KerasTrainer(self, net, options, run, console)
        if options.resume:
            trainer.restore()
        return trainer.fit()

    def bench(self, net: CheckedNet, settings) -> tuple[list, str, dict[str, str]]:
        """Training throughput (netspec.train.bench): the result rows, the device's name, versions."""
        _need_keras("benchmarking with Keras")
        from netspec_keras.bench import bench

        return bench(self, net, settings)

    def export(self, net: CheckedNet, out_dir: Path, formats: list[str], *, weights: str | Path | None = None,
               force: bool = False) -> list[Artifact]:
        from netspec_keras.export import export

        return export(self, net, Path(out_dir), formats, weights=weights, force=force)

    weights_read = (KERAS_WEIGHTS_SUFFIX, ".keras")
    weights_written = KERAS_WEIGHTS_SUFFIX

    def read_weights(self, net: CheckedNet, path: Path) -> dict[str, Any]:
        model = self.load(net, weights=path)  # strict: explains any misfit, loads nothing
        return torch_layout_state(model, net)

    def write_weights(self, net: CheckedNet, state: Mapping[str, Any], path: str, source: str) -> None:
        model = self.load(net)
        set_from_torch_layout(model, net, state, source)
        model.save_weights(path)


def _need_keras(what: str) -> None:
    """A clear error when Keras is missing: this backend renders source without it."""
    try:
        require_modules("keras", "keras")
    except ImportError as exc:
        raise SetupError.single(f"{what} needs Keras: {exc}",
                                hint=f'{INSTALL_HINTS["keras"]} (source export works without it)') from None


def set_from_torch_layout(model, net: CheckedNet, state: Mapping[str, Any], source: str = "the state") -> None:
    """Copy PyTorch-layout arrays, keyed as in the torch backend's state dict, into ``model``;
    strictly: every missing, unexpected or mis-shaped tensor is explained, and nothing is loaded."""
    from netspec.files.weights import misfit, state_key, state_prefixes, to_keras, torch_names

    paths = state_prefixes(net)
    expected = {key: value.shape for key, value in torch_layout_state(model, net).items()}
    # buffers without a Keras twin (batch norm's step counter) may come along, and are dropped
    optional = {state_key(paths[cl.name], buffer) for cl in net.layers for buffer in cl.layer.torch_only_buffers}
    given = {key: tuple(getattr(value, "shape", ())) for key, value in state.items() if key not in optional}
    error = misfit(expected, given, source)
    if error is not None:
        raise error
    for cl in net.layers:
        keys = torch_names(cl)
        if keys:
            tensors = {key: state[state_key(paths[cl.name], key)] for key in keys}
            model.get_layer(cl.name).set_weights(to_keras(cl, tensors))


def torch_layout_state(model, net: CheckedNet) -> dict[str, Any]:
    """The model's weights in PyTorch's layout, keyed as the torch backend's state dict."""
    from netspec.files.weights import keras_names, state_key, state_prefixes, to_torch

    paths = state_prefixes(net)
    state = {}
    for cl in net.layers:
        if keras_names(cl):
            for key, value in to_torch(cl, model.get_layer(cl.name).get_weights()).items():
                state[state_key(paths[cl.name], key)] = value
    return state


def _too_large(path: Path, size: int, budget: int) -> WeightsError:
    return WeightsError.single(f"{path} holds {size:,} bytes of weights, more than this network's could take "
                               f"({budget:,} bytes)", hint="these are the weights of another, larger network, or a "
                               "damaged or hostile file")


def read_keras_weights(path: Path, budget: int | None = None) -> dict[str, list[Any]]:
    """Each layer's variables (by layer name, in Keras' order) from a .weights.h5 file, or from the
    model.weights.h5 inside a .keras archive, whose stored model (config.json) is never read.
    ``budget`` (netspec.files.state_files.weights_budget) bounds what is unpacked and read: memory
    follows the model, never what an archive or a dataset claims."""
    import io
    import zipfile

    import h5py

    source: Any = str(path)
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                member = archive.getinfo("model.weights.h5")
                _require_memory_for(path, member.file_size)  # what it unpacks to, not what it takes on disk
                if budget is not None and member.file_size > 2 * budget + (16 << 20):  # HDF5's own overhead
                    raise _too_large(path, member.file_size, budget)
                source = io.BytesIO(archive.read(member))
        except zipfile.BadZipFile:
            raise WeightsError.single(f"{path} is not a .keras archive (not a zip file)",
                                      hint="a .keras file is what keras' model.save() writes; or pass a .weights.h5 "
                                           "or .safetensors file") from None
        except KeyError:
            raise WeightsError.single(f"{path} holds no model.weights.h5, so it has no weights to load",
                                      hint="save the model with keras' model.save('NAME.keras')") from None
        except (OSError, RuntimeError, ValueError, EOFError) as exc:  # a damaged archive or member
            raise WeightsError.single(f"cannot read {path} as a .keras archive: {exc}",
                                      hint="the file may be truncated or damaged") from None
    layers: dict[str, list[Any]] = {}
    claimed = 0
    try:
        with h5py.File(source, "r") as handle:
            top = handle.get("layers")
            for group in (top.values() if isinstance(top, h5py.Group) else ()):
                variables = group.get("vars")
                if not isinstance(variables, h5py.Group) or not len(variables):
                    continue  # a layer without weights (input, flatten, padding)
                name = variables.attrs.get("name")
                if not isinstance(name, str):
                    raise WeightsError.single(f"{path} does not name its layers (written by an older Keras?)",
                                              hint="netspec loads Keras weights by layer name; re-save them with "
                                                   "Keras 3.10 or newer, or convert them to .safetensors")
                datasets = [variables[key] for key in sorted(variables, key=int)]
                claimed += sum(int(getattr(d, "nbytes", 0)) for d in datasets)  # read from the header alone
                if budget is not None and claimed > budget:
                    raise _too_large(path, claimed, budget)
                layers[name] = [d[()] for d in datasets]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError.single(f"cannot read {path} as Keras weights (HDF5): {exc}",
                                  hint="the file may be truncated, or not a Keras weights file") from None
    return layers


def _require_memory_for(path: Path, size: int) -> None:
    from netspec.codegen.backend import available_memory

    available = available_memory()
    if available is not None and size > available:
        raise WeightsError.single(f"{path} unpacks to {size / 2**30:,.1f} GiB of weights, more than the "
                                  f"{available / 2**30:,.1f} GiB of memory available",
                                  hint="is it really the weights of this spec? (a damaged or hostile archive can "
                                       "claim any size)")


def set_from_keras_weights(model, net: CheckedNet, layers: dict[str, list[Any]], source: str) -> None:
    """Load Keras variables by layer name, strictly: every missing, unexpected or mis-shaped layer
    is explained and nothing is loaded. (Keras' own load_weights matches layers by position: a
    renamed layer would load silently, and layers it cannot place keep their random weights.)"""
    from netspec.files.weights import misfit

    expected = {}
    for cl in net.layers:
        own: dict[str, Any] = {}
        model.get_layer(cl.name).save_own_variables(own)
        if own:
            expected[cl.name] = tuple(tuple(own[str(i)].shape) for i in range(len(own)))
    given = {name: tuple(tuple(getattr(a, "shape", ())) for a in arrays) for name, arrays in layers.items()}
    error = misfit(expected, given, source, what="layer")
    if error is not None:
        raise error
    for name, arrays in layers.items():
        for array in arrays:
            if getattr(array, "dtype", None) is None or array.dtype.kind not in "fiub":
                raise WeightsError.single(f"the weights in {source} do not fit the model: layer '{name}' holds "
                                          f"{getattr(array, 'dtype', type(array).__name__)} values, not numbers",
                                          hint="the file is damaged, or not Keras weights")
        model.get_layer(name).load_own_variables({str(i): array for i, array in enumerate(arrays)})


def load_any_weights(model, net: CheckedNet, path: Path) -> None:
    """Keras weights (.weights.h5, .keras) load by layer name; PyTorch state dicts (.safetensors,
    .pt/.pth) are converted from PyTorch's layout. Strictly, either way."""
    if not path.is_file():
        raise WeightsError.single(f"weights file not found: {path}")
    if path.name.endswith(KERAS_WEIGHTS_SUFFIX) or path.suffix == ".keras":
        from netspec.files.state_files import weights_budget

        set_from_keras_weights(model, net, read_keras_weights(path, weights_budget(net)), str(path))
        return
    from netspec.files.state_files import read_state_dict, weights_budget

    state = read_state_dict(path, as_numpy=True, budget=weights_budget(net))  # .safetensors without torch
    set_from_torch_layout(model, net, state, str(path))


__all__ = ["KerasBackend", "import_keras", "load_any_weights", "read_keras_weights", "set_from_keras_weights",
           "set_from_torch_layout", "torch_layout_state"]

"""The Keras backend, and the promise that one spec with the same weights gives the same outputs
in PyTorch and in Keras: for the logits and for every layer, in both directions."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")

from netspec import check_file, emit  # noqa: E402
from netspec.codegen.backend import get_backend  # noqa: E402
from netspec.errors import SpecError, WeightsError  # noqa: E402
from netspec.layers.base import features_last  # noqa: E402

from .conftest import (  # noqa: E402
    ALL_SPECS,
    BAD_SPECS_DIR,
    EXAMPLE_SPECS,
    ROOT,
    ZOO_BASES,
    ZOO_SPECS,
    assert_matches_golden,
    example_batch,
    small_input,
    without,
)
from .test_layers import CATALOGUE, single_layer_net  # noqa: E402
from .torch_helpers import calibrated_batchnorm, layer_outputs  # noqa: E402

pytestmark = pytest.mark.keras
GOLDEN_DIR = ROOT / "tests" / "golden" / "keras"
ZOO = BAD_SPECS_DIR / "zoo.yaml"
GRAPH = BAD_SPECS_DIR / "graph.yaml"
SEQUENCE = [BAD_SPECS_DIR / "sequence.yaml", BAD_SPECS_DIR / "sequence_blocks.yaml",  # 1-D layers (C×L)
            BAD_SPECS_DIR / "tokens.yaml",  # a token sequence (L×D), channels-last in both frameworks
            BAD_SPECS_DIR / "volume.yaml"]  # a volume (C×D×H×W): 3-D convolution, pooling and batch norm
SPECS = [*ALL_SPECS, ZOO, GRAPH, *SEQUENCE, *ZOO_SPECS, *EXAMPLE_SPECS]
# Torch and Keras compared layer by layer: the zoo's variants (resnet152 extends resnet50 with other
# depths) add no construct their bases lack, and the zoo runs at 64×64, as the torchvision tests do
PARITY_SPECS = [*ALL_SPECS, ZOO, GRAPH, *SEQUENCE, *ZOO_BASES, *EXAMPLE_SPECS]
ZOO_PARITY_INPUT = (3, 64, 64)


def parity_net(spec):
    return check_file(spec, input_shape=small_input(spec, ZOO_PARITY_INPUT[1]) if spec in ZOO_BASES else None)


@pytest.fixture(scope="module")
def backends():
    return get_backend("torch"), get_backend("keras")


def channels_first(array: np.ndarray, shape: tuple = ()) -> np.ndarray:
    """A batch in Keras' channels-last layout (N×H×W×C, N×L×C) as PyTorch's; flat features, and
    token sequences (``shape``'s layout), as they are."""
    return np.moveaxis(array, -1, 1) if array.ndim >= 3 and not features_last(shape) else array


def randomize_torch(model) -> None:
    """Random weights everywhere, batch-norm statistics included, so nothing matches by accident."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator) * 0.1
                tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)


def torch_per_layer(torch_backend, net, model, x):
    outputs, final = layer_outputs(torch_backend, net, model, torch.from_numpy(x))
    return {name: value.numpy() for name, value in outputs.items()}, final.numpy()


def keras_per_layer(net, model, x):
    """Every spec layer's output in Keras (for a batch norm with an activation, its activation's)."""
    import keras

    output_layers = get_backend("keras").plan(net).output_layers
    probe = keras.Model(model.input, [model.get_layer(output_layers.get(cl.name, cl.name)).output
                                      for cl in net.layers])
    values = probe(channels_last(x, net.input_shape), training=False)
    return {cl.name: channels_first(np.asarray(v), cl.output_shape) for cl, v in zip(net.layers, values, strict=True)}


def channels_last(x: np.ndarray, shape: tuple = ()) -> np.ndarray:
    return np.moveaxis(x, 1, -1) if x.ndim >= 3 and not features_last(shape) else x


def assert_close(actual, expected, what):
    scale = max(float(np.abs(expected).max()), 1e-6)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale, err_msg=what)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_keras_model_conforms_to_the_checker(backends, spec):
    net = check_file(spec)
    model = backends[1].load(net)
    for cl in net.layers:
        layer = model.get_layer(cl.name)
        shape = tuple(layer.output.shape[1:])
        if len(shape) > 1 and not features_last(cl.output_shape):  # channels-last to the checker's channels-first
            shape = (shape[-1], *shape[:-1])
        assert (cl.name, shape, layer.count_params()) == (cl.name, cl.output_shape, cl.params + cl.non_trainable)
    assert model.count_params() == net.totals.params


@pytest.mark.parametrize("spec", PARITY_SPECS, ids=lambda p: p.name)
def test_same_weights_same_outputs_torch_to_keras(backends, spec):
    from netspec_keras import set_from_torch_layout

    torch_backend, keras_backend = backends
    net = parity_net(spec)
    torch_model = torch_backend.load(net)
    randomize_torch(torch_model)
    keras_model = keras_backend.load(net)
    set_from_torch_layout(keras_model, net, {k: v.numpy() for k, v in torch_model.state_dict().items()})
    x = example_batch(net, 2)
    expected_layers, expected = torch_per_layer(torch_backend, net, torch_model, x)
    actual_layers = keras_per_layer(net, keras_model, x)
    for cl in net.layers:
        assert_close(actual_layers[cl.name], expected_layers[cl.name], f"layer {cl.name}")
    inputs = channels_last(x, net.input_shape)
    assert_close(channels_first(np.asarray(keras_model(inputs, training=False)), net.output_shape), expected, "logits")
    # traced into a graph, as training and predict run it (eager and traced code can differ)
    assert_close(channels_first(keras_model.predict_on_batch(inputs), net.output_shape), expected, "logits, traced")


@pytest.mark.parametrize("spec", PARITY_SPECS, ids=lambda p: p.name)
def test_same_weights_same_outputs_keras_to_torch(backends, spec):
    from netspec_keras import torch_layout_state

    torch_backend, keras_backend = backends
    net = parity_net(spec)
    keras_model = keras_backend.load(net)
    torch_model = torch_backend.load(net)
    state = {k: torch.from_numpy(v) for k, v in torch_layout_state(keras_model, net).items()}
    torch_model.load_state_dict(state, strict=False)
    own = torch_model.state_dict()
    assert set(own) - set(state) <= {k for k in own if k.endswith(("num_batches_tracked", "relative_position_index"))}
    x = example_batch(net, 2)
    with torch.no_grad():
        expected = torch_model.eval()(torch.from_numpy(x)).numpy()
    actual = keras_model(channels_last(x, net.input_shape), training=False)
    assert_close(expected, channels_first(np.asarray(actual), net.output_shape), "logits")


@pytest.mark.parametrize(("kind", "index"), CATALOGUE, ids=[f"{k}-{i}" for k, i in CATALOGUE])
def test_catalogue_example_in_keras(backends, kind, index):
    from netspec_keras import set_from_torch_layout

    torch_backend, keras_backend = backends
    net = single_layer_net(kind, index)
    try:
        keras_model = keras_backend.load(net)
    except SpecError as exc:  # the backend says plainly what it cannot render
        assert "the keras backend cannot render this layer" in exc.problems[0].message
        # ceil_mode, and a transposed convolution's output_padding: Keras has none
        assert (kind, index) in (("avgpool2d", 1), ("avgpool1d", 1), ("conv_transpose2d", 3))
        return
    torch_model = torch_backend.load(net)
    randomize_torch(torch_model)
    set_from_torch_layout(keras_model, net, {k: v.numpy() for k, v in torch_model.state_dict().items()})
    x = example_batch(net, 2, seed=2)
    with torch.no_grad():
        expected = torch_model.eval()(torch.from_numpy(x)).numpy()
    inputs = channels_last(x, net.input_shape)
    actual = channels_first(np.asarray(keras_model(inputs, training=False)), net.output_shape)
    assert actual.shape[1:] == net.output_shape
    assert_close(actual, expected, f"{kind} example {index}")
    traced = channels_first(keras_model.predict_on_batch(inputs), net.output_shape)
    assert_close(traced, expected, f"{kind} example {index}, traced")


def test_dot_keras_reloads_in_safe_mode(backends, tmp_path):
    import keras

    net = check_file(ZOO)
    [artifact] = backends[1].export(net, tmp_path, ["keras"])
    model = backends[1].load(net)
    model.load_weights(str(artifact.path))
    reloaded = keras.models.load_model(artifact.path)  # safe_mode=True is the default
    x = np.random.default_rng(3).standard_normal((2, 33, 31, 3)).astype("float32")
    assert_close(np.asarray(reloaded(x, training=False)), np.asarray(model(x, training=False)), "reloaded")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_generated_keras_source_matches_golden(spec, monkeypatch):
    monkeypatch.chdir(ROOT)
    source = emit(spec.relative_to(ROOT), "keras")
    assert_matches_golden(source, GOLDEN_DIR / f"{spec.stem.replace('-', '_')}.py")


def test_golden_keras_sources_pass_ruff_and_build():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(GOLDEN_DIR)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    golden = GOLDEN_DIR / "zoo.py"
    module_spec = importlib.util.spec_from_file_location("golden_keras_zoo", golden)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    assert module.build_zoo().count_params() == check_file(ZOO).totals.params


def test_convert_cli_round_trip(tmp_path):
    from typer.testing import CliRunner

    from netspec.cli import app

    runner = CliRunner()
    torch_backend = get_backend("torch")
    net = check_file(ZOO)
    model = torch_backend.load(net)
    randomize_torch(model)
    counters = [key for key in model.state_dict() if key.endswith("num_batches_tracked")]
    assert counters
    for key in counters:
        model.state_dict()[key].fill_(24)
    torch.save(model.state_dict(), tmp_path / "trained.pth")
    to_keras = runner.invoke(app, ["convert", str(ZOO), "--weights", str(tmp_path / "trained.pth"),
                                   "--to", "keras", "-o", str(tmp_path / "k")])
    assert to_keras.exit_code == 0, to_keras.output
    keras_weights = tmp_path / "k" / "trained.weights.h5"
    back = runner.invoke(app, ["convert", str(ZOO), "--weights", str(keras_weights), "--to", "torch",
                               "-o", str(tmp_path / "t")])
    assert back.exit_code == 0, back.output
    again = torch_backend.load(net, weights=tmp_path / "t" / "trained.safetensors")
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(again.state_dict()[key], value)
    # the step counter has no Keras twin: it comes back as 0, says so, and changes nothing, since
    # PyTorch reads it only for momentum=None, which no spec's batch norm has
    from safetensors import safe_open

    assert all(int(again.state_dict()[key]) == 0 for key in counters)
    with safe_open(str(tmp_path / "t" / "trained.safetensors"), "pt") as handle:
        assert handle.metadata()["num_batches_tracked"].startswith("0: Keras keeps no step counter")
    assert all(m.momentum is not None for m in again.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


KERAS_ON_TORCH = """
import os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np, torch
from netspec import check_file
from netspec.codegen.backend import get_backend
from netspec_keras import set_from_torch_layout, import_keras
keras = import_keras()
assert keras.config.backend() == "torch", keras.config.backend()
net = check_file(sys.argv[1])
torch_model = get_backend("torch").load(net).eval()
keras_model = get_backend("keras").load(net)
set_from_torch_layout(keras_model, net, {k: v.numpy() for k, v in torch_model.state_dict().items()})
x = np.random.default_rng(0).standard_normal((2, *net.input_shape)).astype("float32")
with torch.no_grad():
    expected = torch_model(torch.from_numpy(x)).numpy()
actual = keras.ops.convert_to_numpy(keras_model(x.transpose(0, 2, 3, 1), training=False))
np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
print("OK", keras.config.backend())
"""


@pytest.mark.parametrize("spec", [ZOO, ROOT / "specs" / "alexnet.yaml"], ids=lambda p: p.name)
def test_generated_keras_code_runs_on_the_torch_keras_backend(spec):
    """The generated code uses keras and keras.ops only, so Keras on PyTorch runs it too (the GPU
    machine has no TensorFlow)."""
    result = subprocess.run([sys.executable, "-c", KERAS_ON_TORCH, str(spec)], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "torch"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK torch" in result.stdout


# The Keras write-up's model.summary(): (layer, output shape, params), helper layers aside.
KERAS_WRITEUP_SUMMARY = [
    ("conv1", (56, 56, 96), 34_944), ("pool1", (27, 27, 96), 0), ("conv2", (27, 27, 256), 614_656),
    ("pool2", (13, 13, 256), 0), ("conv3", (13, 13, 384), 885_120), ("conv4", (13, 13, 384), 1_327_488),
    ("conv5", (13, 13, 256), 884_992), ("pool5", (6, 6, 256), 0), ("flatten", (9216,), 0),
    ("drop6", (9216,), 0), ("fc6", (4096,), 37_752_832), ("drop7", (4096,), 0), ("fc7", (4096,), 16_781_312),
    ("fc8", (1000,), 4_097_000),
]


def test_alexnet_keras_summary_equals_the_keras_writeup(backends):
    model = backends[1].load(check_file(ROOT / "specs" / "alexnet-keras.yaml"))
    rows = [(layer.name, tuple(layer.output.shape[1:]), layer.count_params()) for layer in model.layers
            if not layer.name.endswith("_chw") and layer.name != "input"]
    assert rows == KERAS_WRITEUP_SUMMARY
    assert model.count_params() == 62_378_344


def test_savedmodel_serves_the_same_outputs(backends, tmp_path):
    import tensorflow as tf

    net = check_file(ZOO)
    model_path = tmp_path / "zoo.weights.h5"
    backends[1].load(net).save_weights(str(model_path))
    [artifact] = backends[1].export(net, tmp_path, ["savedmodel"], weights=model_path)
    assert artifact.path.name == "zoo.savedmodel" and (artifact.path / "saved_model.pb").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    served = tf.saved_model.load(str(artifact.path))
    x = np.random.default_rng(4).standard_normal((2, 33, 31, 3)).astype("float32")
    expected = backends[1].load(net, weights=model_path)(x, training=False)
    assert_close(np.asarray(served.serve(x)), np.asarray(expected), "savedmodel")


def test_names_that_clash_with_keras_helper_layers_are_refused(write_spec):
    path = write_spec("""
        name: clash
        input: [3, 8, 8]
        layers:
          - {name: conv, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}
          - {name: conv_pad, type: relu}
    """)
    with pytest.raises(SpecError) as caught:
        emit(path, "keras")
    [problem] = caught.value.problems
    assert problem.message == "the name 'conv_pad' is also a helper layer of 'conv' in Keras"
    assert (problem.location.line, problem.layer) == (5, "conv_pad")


KERAS_USER_SCRIPT = """
import sys
import keras  # TensorFlow first, as a Keras user's script does
import netspec
model = netspec.build(sys.argv[1], backend="keras")
assert model.count_params() > 0
torch_model = netspec.build(sys.argv[1], backend="torch")  # torch after TensorFlow
import torchvision  # noqa: F401  (imports Triton, whose LLVM clashes with TensorFlow's)
print("OK", model.count_params())
"""


def test_a_keras_users_script_that_imports_keras_first_runs():
    """`import keras` (TensorFlow loaded) before netspec must not crash when netspec or the user
    then loads Triton (torchvision, torch.export, torch.compile import it)."""
    result = subprocess.run([sys.executable, "-c", KERAS_USER_SCRIPT, str(ZOO)], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout




WITHOUT_TORCH_SCRIPT = without(("torch", "torchvision", "triton", "netspec_torch"), """
import netspec
model = netspec.build(sys.argv[1], backend="keras", weights=sys.argv[2])
print("OK", model.count_params(), sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "netspec_torch")))
""")


def test_the_keras_backend_needs_no_torch(backends, tmp_path):
    """Building a Keras model from PyTorch-layout .safetensors weights never imports torch, nor
    the torch backend (a Keras-only install has neither)."""
    from safetensors.numpy import save_file

    net = check_file(ZOO)
    state = {key: np.asarray(value.detach().numpy())
             for key, value in backends[0].load(net).state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    result = subprocess.run([sys.executable, "-c", WITHOUT_TORCH_SCRIPT, str(ZOO), str(tmp_path / "w.safetensors")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[0] == "OK" and result.stdout.rstrip().endswith("[]")


WITHOUT_KERAS_SCRIPT = without(("keras", "tensorflow"), """
from netspec.cli import main
sys.argv = ["netspec", *sys.argv[1:]]
main()
""")


@pytest.mark.parametrize(("fmt", "code"), [("source", 0), ("keras", 2)])
def test_keras_source_needs_no_keras_and_building_says_what_it_needs(tmp_path, fmt, code):
    result = subprocess.run([sys.executable, "-c", WITHOUT_KERAS_SCRIPT, "export", str(ZOO), "-b", "keras", "-f", fmt,
                             "-o", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if code == 0:
        assert (tmp_path / "out" / "zoo_keras.py").is_file()
    else:
        assert "building the Keras model needs Keras" in result.stdout + result.stderr
        assert not (tmp_path / "out").exists()


SMALL = """
    name: small
    input: [3, 8, 8]
    layers:
      - {name: conv, type: conv2d, out_channels: 4, kernel_size: 3}
      - {type: flatten}
      - {name: fc, type: linear, out_features: 2}
"""


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_keras_weights_load_by_layer_name_and_strictly(backends, write_spec, tmp_path, suffix):
    """Keras' own load_weights matches layers by position: a renamed layer loaded silently, and a
    layer it could not place kept its random weights. netspec matches names, all or nothing."""
    keras_backend = backends[1]
    model = keras_backend.load(check_file(write_spec(SMALL, "small.yaml")))
    path = tmp_path / f"small{suffix}"
    (model.save_weights if suffix == ".weights.h5" else model.save)(str(path))
    renamed = write_spec(SMALL.replace("name: fc,", "name: head,"), "renamed.yaml")
    with pytest.raises(WeightsError) as caught:
        keras_backend.load(check_file(renamed), weights=path)
    message = caught.value.problems[0].message
    assert f"the weights in {path} do not fit the model" in message
    assert "missing from the file: head" in message and "not in the model: fc" in message
    extra_layer = "- {name: fc0, type: linear, out_features: 5}\n      - {name: fc,"
    deeper = write_spec(SMALL.replace("- {name: fc,", extra_layer), "deeper.yaml")
    with pytest.raises(WeightsError, match="missing from the file: fc0"):
        keras_backend.load(check_file(deeper), weights=path)
    wider = write_spec(SMALL.replace("out_features: 2", "out_features: 3"), "wider.yaml")
    misfit = r"fc: the model has \[\(144, 3\), \(3,\)\], the file \[\(144, 2\), \(2,\)\]"
    with pytest.raises(WeightsError, match=misfit):
        keras_backend.load(check_file(wider), weights=path)
    again = keras_backend.load(check_file(write_spec(SMALL, "small.yaml")), weights=path)
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_torch_weights_with_an_extra_tensor_do_not_load_into_keras(backends, write_spec, tmp_path):
    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from netspec.cli import app

    spec = write_spec(SMALL, "small.yaml")
    state = dict(backends[0].load(check_file(spec)).state_dict())
    state["fc_old.weight"] = torch.zeros(2, 144)
    save_file(state, tmp_path / "extra.safetensors")
    result = CliRunner().invoke(app, ["export", str(spec), "-b", "keras", "-o", str(tmp_path / "out"), "-f", "weights",
                                      "--weights", str(tmp_path / "extra.safetensors")])
    assert result.exit_code == 2, result.output
    assert "not in the model: fc_old.weight" in result.output
    assert not (tmp_path / "out").exists()


def test_convert_to_torch_never_skips_a_tensor(backends, write_spec, tmp_path, monkeypatch):
    """A layer whose torch name differs from the plan's (a mangled `__fc` was one) used to leave
    random weights in the converted file (load_state_dict(strict=False)); now it is refused."""
    from typer.testing import CliRunner

    import netspec_keras
    from netspec.cli import app

    spec = write_spec(SMALL, "small.yaml")
    backends[1].load(check_file(spec)).save_weights(str(tmp_path / "small.weights.h5"))
    real = netspec_keras.torch_layout_state

    def misnamed(model, net):
        state = real(model, net)
        state["_N3__fc.weight"] = state.pop("fc.weight")
        return state

    monkeypatch.setattr(netspec_keras, "torch_layout_state", misnamed)
    result = CliRunner().invoke(app, ["convert", str(spec), "--weights", str(tmp_path / "small.weights.h5"),
                                      "--to", "torch", "-o", str(tmp_path / "back")])
    assert result.exit_code == 2, result.output
    assert "missing from the file: fc.weight" in result.output and "not in the model: _N3__fc.weight" in result.output
    assert not (tmp_path / "back").exists()


def test_keras_files_that_are_not_keras_weights_are_named(backends, write_spec, tmp_path):
    import zipfile

    net = check_file(write_spec(SMALL, "small.yaml"))
    not_zip = tmp_path / "text.keras"
    not_zip.write_text("hello")
    no_weights = tmp_path / "empty.keras"
    with zipfile.ZipFile(no_weights, "w") as archive:
        archive.writestr("config.json", "{}")
    not_h5 = tmp_path / "text.weights.h5"
    not_h5.write_text("hello")
    for path, message in ((not_zip, "is not a .keras archive (not a zip file)"),
                          (no_weights, "holds no model.weights.h5"), (not_h5, "cannot read")):
        with pytest.raises(WeightsError) as caught:
            backends[1].load(net, weights=path)
        assert message in caught.value.problems[0].message and str(path) in caught.value.problems[0].message


def test_keras_weights_that_are_not_numbers_are_named(backends, write_spec, tmp_path):
    import h5py

    net = check_file(write_spec(SMALL, "small.yaml"))
    path = tmp_path / "small.weights.h5"
    backends[1].load(net).save_weights(str(path))
    with h5py.File(path, "r+") as handle:
        [variables] = [g["vars"] for g in handle["layers"].values() if g["vars"].attrs.get("name") == "fc"]
        del variables["1"]
        variables.create_dataset("1", data=np.array([b"x", b"y"]))
    with pytest.raises(WeightsError, match=re.escape("layer 'fc' holds |S1 values, not numbers")):
        backends[1].load(net, weights=path)


def test_a_keras_archive_larger_than_the_memory_is_refused(backends, write_spec, tmp_path, monkeypatch):
    import netspec.codegen.backend

    net = check_file(write_spec(SMALL, "small.yaml"))
    path = tmp_path / "small.keras"
    backends[1].load(net).save(str(path))
    monkeypatch.setattr(netspec.codegen.backend, "available_memory", lambda: 1000)
    with pytest.raises(WeightsError, match=r"small.keras unpacks to 0.0 GiB of weights, more than the 0.0 GiB"):
        backends[1].load(net, weights=path)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "convnext_tiny", "vit_b_16"])
def test_a_torchvision_checkpoint_becomes_a_keras_file_with_the_same_outputs(tmp_path, name):
    """The README's way to bring torchvision's weights to Keras: `netspec export ZOO_SPEC --weights
    tv.pth -b keras -f source -f keras`, then the .keras file loads in Keras alone (after importing
    the exported source, which registers its helper layers) and predicts what torchvision does."""
    import keras
    import torchvision
    from typer.testing import CliRunner

    from netspec.cli import app

    torch.manual_seed(0)
    reference = calibrated_batchnorm(getattr(torchvision.models, name)(), (3, 224, 224), batch=2)
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["export", str(ROOT / "specs" / "zoo" / f"{name}.yaml"), "--weights",
                                      str(tmp_path / "tv.pth"), "-b", "keras", "-f", "source", "-f", "keras",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    source = importlib.util.spec_from_file_location(f"{name}_keras", out / f"{name}_keras.py")
    source.loader.exec_module(importlib.util.module_from_spec(source))
    model = keras.saving.load_model(out / f"{name}.keras")
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    assert_close(model.predict_on_batch(channels_last(x)), expected, "logits")

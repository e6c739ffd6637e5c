"""The PyTorch backend: conformance with the checker, golden sources, torchvision parity,
exports that reload with their own loaders, and clear errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from netspec import build, check_file, emit  # noqa: E402
from netspec.codegen.backend import available_backends, get_backend  # noqa: E402
from netspec.errors import SetupError, SpecError, WeightsError  # noqa: E402
from netspec.layers import LAYER_REGISTRY  # noqa: E402

from .conftest import (  # noqa: E402
    ALL_SPECS,
    BAD_SPECS_DIR,
    EXAMPLE_SPECS,
    ROOT,
    SPECS_DIR,
    ZOO_SPECS,
    assert_matches_golden,
    example_batch,
)
from .test_layers import CATALOGUE, single_layer_net  # noqa: E402
from .torch_helpers import per_layer  # noqa: E402

pytestmark = pytest.mark.torch
GOLDEN_DIR = ROOT / "tests" / "golden" / "torch"
ZOO = BAD_SPECS_DIR / "zoo.yaml"
GRAPH = BAD_SPECS_DIR / "graph.yaml"
SEQUENCE = [BAD_SPECS_DIR / "sequence.yaml", BAD_SPECS_DIR / "sequence_blocks.yaml",  # 1-D layers (C×L)
            BAD_SPECS_DIR / "tokens.yaml", BAD_SPECS_DIR / "volume.yaml"]  # tokens (L×D), a volume (C×D×H×W)
GOLDEN_SPECS = [*ALL_SPECS, ZOO, GRAPH, *SEQUENCE, *ZOO_SPECS, *EXAMPLE_SPECS]


@pytest.fixture(scope="module")
def backend():
    return get_backend("torch")


def test_backend_is_registered_as_an_entry_point():
    assert "torch" in available_backends()


@pytest.mark.parametrize("spec", GOLDEN_SPECS, ids=lambda p: p.name)
def test_spec_conforms_to_the_checker(backend, spec):
    net = check_file(spec)
    model = backend.load(net)
    x = torch.from_numpy(example_batch(net, 2))
    measured, y = per_layer(backend, net, model, x)
    assert measured == [(cl.output_shape, cl.params, cl.non_trainable) for cl in net.layers]
    assert tuple(y.shape) == (2, *net.output_shape)
    assert sum(p.numel() for p in model.parameters()) == net.totals.trainable_params


@pytest.mark.parametrize(("kind", "index"), CATALOGUE, ids=[f"{k}-{i}" for k, i in CATALOGUE])
def test_catalogue_example_conforms_to_the_checker(backend, kind, index):
    """Each catalogue example built by the torch backend and run forward: torch's output shape,
    parameters and buffers equal the checker's."""
    net = single_layer_net(kind, index)
    model = backend.load(net).eval()
    x = torch.from_numpy(example_batch(net, 3))
    measured, y = per_layer(backend, net, model, x)
    assert measured == [(cl.output_shape, cl.params, cl.non_trainable) for cl in net.layers]
    assert tuple(y.shape[1:]) == net.output_shape


@pytest.mark.parametrize("spec", GOLDEN_SPECS, ids=lambda p: p.name)
def test_generated_source_matches_golden(spec, monkeypatch):
    monkeypatch.chdir(ROOT)  # the header names the spec by its path from the project root
    source = emit(spec.relative_to(ROOT))
    assert_matches_golden(source, GOLDEN_DIR / f"{spec.stem.replace('-', '_')}.py")


def test_golden_sources_pass_ruff():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(GOLDEN_DIR)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("spec", GOLDEN_SPECS, ids=lambda p: p.name)
def test_golden_source_imports_standalone_and_runs(spec):
    golden = GOLDEN_DIR / f"{spec.stem.replace('-', '_')}.py"
    module_spec = importlib.util.spec_from_file_location(f"golden_{golden.stem}", golden)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    imported = {name for name in module.__dict__ if not name.startswith("__")}
    classes = [v for v in module.__dict__.values() if isinstance(v, type) and issubclass(v, torch.nn.Module)
               and v.__module__ == module.__name__]
    net = check_file(spec)
    plan = get_backend("torch").plan(net)
    [network] = [cls for cls in classes if cls.__name__ == plan.class_name]  # the others: its modules
    assert imported <= {"torch", "F", "nn", "OrderedDict", plan.builder, *(cls.__name__ for cls in classes)}
    built = getattr(module, plan.builder)()  # the builder named after the spec, as torchvision's resnet50()
    assert type(built) is network
    with torch.no_grad():
        y = built.eval()(torch.from_numpy(example_batch(net, 1)))
    assert tuple(y.shape[1:]) == net.output_shape


def test_live_model_is_built_from_the_emitted_source(backend):
    net = check_file(ZOO)
    model = backend.load(net)
    import inspect

    assert inspect.getsource(type(model)) in backend.emit(net)


def test_torchvision_state_dict_loads_strictly_with_equal_outputs(tmp_path):
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None).eval()
    path = tmp_path / "alexnet-torchvision.pth"
    torch.save(reference.state_dict(), path)
    model = build(SPECS_DIR / "alexnet-torchvision.yaml", weights=path).eval()
    assert list(model.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_weights_for_another_head_are_explained(tmp_path):
    small = build(SPECS_DIR / "alexnet-torchvision.yaml", overrides=["num_classes=10"])
    path = tmp_path / "ten.pth"
    torch.save(small.state_dict(), path)
    with pytest.raises(WeightsError) as caught:
        build(SPECS_DIR / "alexnet-torchvision.yaml", weights=path)
    message = caught.value.problems[0].message
    assert "classifier.6.weight: the model has (1000, 4096), the file (10, 4096)" in message
    assert "classifier.6.bias: the model has (1000,), the file (10,)" in message


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_is_never_run(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Payload()}, path)
    with pytest.raises(WeightsError, match="not a plain state dict of tensors"):
        build(SPECS_DIR / "alexnet.yaml", weights=path)


def test_reserved_names_are_refused_with_their_location(write_spec):
    path = write_spec("""
        name: clash
        input: [3, 8, 8]
        layers:
          - {name: training, type: relu}
    """)
    with pytest.raises(SpecError) as caught:
        emit(path)
    [problem] = caught.value.problems  # refused by the check itself, before any backend
    assert "'training' is an attribute the generated torch class inherits from torch.nn.Module" in problem.message
    assert (problem.location.line, problem.layer) == (4, "training")


def test_unknown_backend_lists_what_is_installed():
    with pytest.raises(SetupError) as caught:
        get_backend("pytorch")
    assert "the backend 'pytorch' is unknown" in caught.value.problems[0].message
    assert caught.value.problems[0].hint.startswith("did you mean 'torch'?")


@pytest.mark.slow
def test_exports_reload_with_their_own_loaders(tmp_path, backend):
    onnxruntime = pytest.importorskip("onnxruntime")
    from safetensors.torch import load_file

    net = check_file(ZOO)
    artifacts = backend.export(net, tmp_path, ["source", "safetensors", "pt2", "onnx"])
    files = {a.format: a.path for a in artifacts}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo.onnx", "zoo.pt2", "zoo.safetensors", "zoo_torch.py"]

    model = backend.load(net, weights=files["safetensors"]).eval()
    x = torch.randn(3, *net.input_shape)  # a batch size the exports did not trace with
    with torch.no_grad():
        expected = model(x)
    assert files["source"].read_text() == backend.emit(net)
    state = load_file(files["safetensors"])
    assert state.keys() == model.state_dict().keys()

    program = torch.export.load(files["pt2"])
    torch.testing.assert_close(program.module()(x), expected, rtol=1e-5, atol=1e-6)

    session = onnxruntime.InferenceSession(str(files["onnx"]), providers=["CPUExecutionProvider"])
    [onnx_out] = session.run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(onnx_out), expected, rtol=1e-4, atol=1e-5)


def test_export_with_weights_keeps_them(tmp_path, backend):
    net = check_file(ZOO)
    from safetensors.torch import load_file

    first = backend.export(net, tmp_path / "a", ["safetensors"])[0].path
    second = backend.export(net, tmp_path / "b", ["safetensors"], weights=first)[0].path
    a, b = load_file(first), load_file(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_export_refuses_to_overwrite_without_force(tmp_path):
    from typer.testing import CliRunner

    from netspec.cli import app

    runner = CliRunner()
    args = ["export", str(ZOO), "-o", str(tmp_path)]
    assert runner.invoke(app, args).exit_code == 0
    before = (tmp_path / "zoo_torch.py").read_text()
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "refusing to overwrite" in refused.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert (tmp_path / "zoo_torch.py").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["zoo_torch.py"]  # no temporary files left behind


def test_cli_export_unknown_format(tmp_path):
    from typer.testing import CliRunner

    from netspec.cli import app

    result = CliRunner().invoke(app, ["export", str(ZOO), "-o", str(tmp_path), "-f", "tflite"])
    assert result.exit_code == 2 and "unknown export format 'tflite'" in result.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("backend_name", ["torch", "keras"])
def test_text_from_the_spec_cannot_become_code(write_spec, backend_name):
    import ast

    pytest.importorskip(backend_name)
    path = write_spec('''
        name: injected
        description: "nice net\\nimport os; os.system('echo pwned')\\r\\u2028raise SystemExit\\"\\"\\""
        input: [3, 8, 8]
        layers:
          - {type: flatten}
          - {name: fc, type: linear, out_features: 2}
    ''')
    source = emit(path, backend_name)
    tree = ast.parse(source)  # still valid Python
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "os" not in imported
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Raise)]
    assert "# nice net import os; os.system('echo pwned') raise SystemExit\"\"\"" in source


def test_an_unreadable_weights_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "locked.pth"
    torch.save({}, path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(WeightsError, match=f"cannot read {path}: Permission denied"):
        build(ZOO, weights=path)


@pytest.mark.parametrize("backend", ["torch", pytest.param("keras", marks=pytest.mark.keras)])
def test_the_header_names_the_spec_file_and_its_overrides_within_the_line_length(tmp_path, backend):
    """At a long path the first line embedded the path (125 characters, over ruff's 120), and the
    --set overrides that shaped the network were not said."""
    deep = tmp_path / ("a-very-long-folder-name-" * 4) / ("and-another-one-" * 4)
    deep.mkdir(parents=True)
    spec = deep / "alexnet-torchvision.yaml"
    spec.write_text((SPECS_DIR / "alexnet-torchvision.yaml").read_text())
    long_value = "x" * 150
    source = emit(spec, backend, overrides=["num_classes=10", f"data.path=/{long_value}"])
    lines = source.splitlines()
    assert lines[0] == "# Generated by netspec 0.1.0 from alexnet-torchvision.yaml (alexnet-torchvision)."
    assert lines[1] == "# with --set num_classes=10"
    assert lines[2].startswith("# with --set data.path=/xxx") and lines[2].endswith("…")
    assert max(map(len, lines)) <= 120 and str(tmp_path) not in source
    assert "# with --set" not in emit(spec, backend)
    written = tmp_path / "generated.py"
    written.write_text(source)
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                           str(ROOT / "pyproject.toml"), str(written)], capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout


@pytest.mark.parametrize(("activation", "imported"), [("hardswish", True), ("relu", False)])
def test_an_import_is_written_when_a_rendered_expression_declares_it(write_spec, activation, imported):
    """F.hardswish(...) declares torch.nn.functional as it is rendered (need("F")); torch.relu needs
    nothing more. The module imports exactly what its expressions declared."""
    from netspec_torch.imports import need, recording

    spec = write_spec(f"""
        name: act
        input: [3, 8, 8]
        layers:
          - {{name: conv, type: conv2d, out_channels: 4, kernel_size: 3, activation: {activation}}}
          - {{type: flatten}}
    """)
    source = get_backend("torch").emit(check_file(spec))
    assert ("import torch.nn.functional as F" in source) is imported
    assert ("F." in source) is imported
    with recording() as needed:
        need("OrderedDict")
    assert needed == {"OrderedDict"} and need("F") == ""  # outside a rendering it records nothing
    with pytest.raises(ValueError):
        need("numpy")


def test_the_generated_class_takes_the_classifiers_width_as_torchvision_does(tmp_path):
    """`ResNet(num_classes=10)` and `resnet50(num_classes=10)` from the exported source are
    torchvision's resnet50(num_classes=10): its state dict loads strictly into both."""
    import torch
    import torchvision

    from netspec.codegen.render import execute_generated

    source = get_backend("torch").emit(check_file(ROOT / "specs" / "zoo" / "resnet50.yaml"))
    assert "    def __init__(self, num_classes: int = 1000) -> None:" in source
    namespace = execute_generated(source, "resnet50_exported")
    reference = torchvision.models.resnet50(num_classes=10).state_dict()
    for model in (namespace["ResNet"](num_classes=10), namespace["resnet50"](num_classes=10)):
        assert type(model) is namespace["ResNet"]
        model.load_state_dict(reference, strict=True)
        assert tuple(model.eval()(torch.randn(2, 3, 64, 64)).shape) == (2, 10)
    assert namespace["resnet50"]().fc.out_features == 1000  # the spec's default


WIDTHS = """
    name: widths
    input: [3, 8, 8]
    params: {width: 4, num_classes: 5}
    layers:
      - {name: conv, type: conv2d, out_channels: "${width}", kernel_size: 3}
      - {name: pool, type: global_avgpool2d}
      - {name: fc, type: linear, out_features: "${num_classes}"}
"""


@pytest.mark.parametrize(("edit", "signature"), [
    (("", ""), "__init__(self, num_classes: int = 5)"),
    (('"${num_classes}"', '"${num_classes * width}"'), "__init__(self)"),  # names a width the code fixes
    (('out_features: "${num_classes}"}', 'out_features: "${num_classes}"}\n      - {name: act, type: relu}'),
     "__init__(self)"),
], ids=["classifier", "with-a-fixed-param", "taken-by-a-later-layer"])
def test_only_a_param_that_fixes_nothing_else_becomes_an_argument(write_spec, edit, signature):
    """A width in the middle of the network sets the next layer's input channels, which the code
    writes as a number: as an argument it would build a network that cannot run."""
    source = get_backend("torch").emit(check_file(write_spec(WIDTHS.replace(*edit))))
    assert f"class Widths(nn.Module):\n    def {signature} -> None:" in source
    assert "nn.Conv2d(3, 4, kernel_size=3)" in source


def test_a_layernorm_over_an_images_channels_is_torchvisions_layernorm2d(write_spec):
    """ConvNeXt normalizes the channels at every pixel (torchvision's LayerNorm2d): the generated
    ChannelLayerNorm loads its state dict strictly and gives its outputs; eps is its own (1e-6)."""
    from torchvision.models.convnext import LayerNorm2d

    spec = "name: ln\ninput: [6, 5, 4]\nlayers: [{name: norm, type: layernorm, eps: 1.0e-6}]\n"
    model = build(write_spec(spec), backend="torch").eval()
    reference = LayerNorm2d(6, eps=1e-6).eval()
    with torch.no_grad():
        reference.weight.normal_()
        reference.bias.normal_()
    model.norm.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 6, 5, 4) * 3 + 1
    with torch.no_grad():
        expected = reference(x)
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert not torch.allclose(expected, reference(x.flip(1)), atol=1e-3)  # the output depends on the input
        wrong = LayerNorm2d(6, eps=1.0).eval()  # a mutant eps
        wrong.load_state_dict(reference.state_dict())
        assert not torch.allclose(model(x), wrong(x), atol=1e-3)


@pytest.mark.parametrize(("kind", "index"), [(k, i) for k, i in CATALOGUE
                                             if LAYER_REGISTRY[k].torch_only_buffers != ("num_batches_tracked",)
                                             and LAYER_REGISTRY[k].torch_only_buffers])
def test_the_index_tables_a_layer_counts_are_the_ones_pytorch_keeps(kind, index):
    """A weights file carries them; the bound on what a weights file may hold counts them."""
    net = single_layer_net(kind, index)
    layer = net.layer("layer")
    model = get_backend("torch").load(net)
    held = sum(b.numel() for name, b in model.named_buffers()
               if name.rpartition(".")[2] in layer.layer.torch_only_buffers)
    assert held == layer.layer.torch_buffer_elements(layer.resolved) > 0


def test_a_network_with_a_large_attention_window_loads_the_weights_it_saved(write_spec, tmp_path):
    """One 28×28 window: its relative position index (784² int64, 4.9 MB) outweighs its parameters,
    and the file netspec wrote was refused as too large for the network."""
    import torch
    from safetensors.torch import save_file

    spec = write_spec("""
        name: one_window
        input: [8, 28, 28]
        layers:
          - {name: groups, type: partition, by: window, size: 28}
          - {name: attention, type: relative_attention, num_heads: 2}
          - {name: back, type: departition}
          - {name: pool, type: global_avgpool2d}
    """)
    model = build(spec).eval()
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    again = build(spec, weights=tmp_path / "w.safetensors").eval()
    x = torch.randn(2, 8, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))

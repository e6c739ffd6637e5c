"""`netspec import`: an existing PyTorch model read back as a spec that reads as hand-written,
written only after a round trip (the spec's model, the original's weights loaded strictly, the
same outputs), and refused with where it is when something has no layer."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from netspec.cli import app

pytestmark = pytest.mark.torch

runner = CliRunner()


def run_import(*args: str):
    return runner.invoke(app, ["import", *args])


def test_resnet18_becomes_a_short_spec_whose_model_gives_torchvisions_outputs(tmp_path):
    import torch
    import torchvision

    import netspec

    spec, weights = tmp_path / "resnet18.yaml", tmp_path / "resnet18.safetensors"
    result = run_import("torchvision.models.resnet18", "-o", str(spec), "--input", "3x64x64",
                        "--weights", str(weights), "--arg", "num_classes=10")
    assert result.exit_code == 0, result.output
    assert "verified: 122 tensors loaded strictly" in result.output
    text = spec.read_text()
    document = yaml.safe_load(text)
    assert len(text.splitlines()) <= 40 and list(document["modules"]) == ["downsample", "basic_block"]
    stage = next(layer for layer in document["layers"] if layer["name"] == "layer2")
    assert stage == {"name": "layer2", "module": "basic_block", "repeat": 2,
                     "params": {"out_channels": 128}, "first": {"stride": 2, "downsample": True}}
    assert document["layers"][-1] == {"name": "fc", "type": "linear", "out_features": 10}
    # checked independently of the round trip: the written spec and weights rebuild torchvision's model
    torch.manual_seed(1)
    original = torchvision.models.resnet18(num_classes=10).eval()
    from safetensors.torch import save_file

    save_file(original.state_dict(), weights.with_name("other.safetensors"))
    model = netspec.build(spec, weights=weights.with_name("other.safetensors")).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(model(x), original(torch.randn(2, 3, 64, 64)), atol=1e-3)


def test_a_users_blocks_become_one_definition_with_params_a_flag_and_repeats(tmp_path):
    spec = tmp_path / "small.yaml"
    result = run_import("tests.import_models:small", "-o", str(spec), "--input", "3x16x16")
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(spec.read_text())
    block = document["modules"]["block"]
    assert block["params"] == {"out_channels": 8, "stride": 1, "shortcut": False}
    shortcut = next(layer for layer in block["layers"] if layer["name"] == "shortcut")
    assert shortcut["when"] == "${shortcut}" and shortcut["inputs"] == "input"
    assert {"name": "add", "type": "add", "inputs": ["act", "shortcut"]} in block["layers"]
    assert document["layers"][1] == {"name": "stage1", "module": "block", "repeat": 3}
    assert document["layers"][2] == {"name": "stage2", "module": "block", "repeat": 3, "params": {"out_channels": 16},
                                     "first": {"stride": 2, "shortcut": True}}


@pytest.mark.parametrize(("target", "message"), [
    ("tests.import_models:rolled", "error: roll: torch.roll has no netspec layer"),
    ("tests.import_models:branching", "error: the model: its forward cannot be traced"),
    ("tests.import_models:with_unused_head", "error: aux holds weights that the forward pass (in evaluation) "
                                             "does not use"),
    ("torchvision.models.densenet121", "error: features.denseblock1.denselayer1: _DenseLayer is called with a list"),
    ("tests.import_models:nothing", "error: tests.import_models has no callable 'nothing'"),
])
def test_what_cannot_be_imported_is_refused_with_where_it_is_and_nothing_is_written(tmp_path, target, message):
    spec = tmp_path / "out.yaml"
    result = run_import(target, "-o", str(spec), "--input", "3x32x32", "--weights", str(tmp_path / "w.safetensors"))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_spec_that_computes_something_else_is_never_written(tmp_path, monkeypatch):
    """The round trip is what stands between a mapping mistake and the user's file: a ReLU read as
    ReLU6 (a mutant of the importer) builds, loads strictly, and is caught by the outputs."""
    from netspec_torch import importer

    monkeypatch.setitem(importer.MODULE_LAYERS, "ReLU", lambda module, where: {"type": "relu6"})
    spec = tmp_path / "small.yaml"
    result = run_import("tests.import_models:small", "-o", str(spec), "--input", "3x16x16")
    assert result.exit_code == 2 and "does not reproduce the original" in result.output
    assert not spec.exists()
    # without the round trip, the wrong spec is written: the check is what refused it
    assert run_import("tests.import_models:small", "-o", str(spec), "--input", "3x16x16", "--no-verify").exit_code == 0
    assert "relu6" in spec.read_text()


def test_an_existing_file_is_not_replaced_without_force(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text("mine\n")
    result = run_import("tests.import_models:small", "-o", str(spec), "--input", "3x16x16")
    assert result.exit_code == 2 and spec.read_text() == "mine\n"
    assert run_import("tests.import_models:small", "-o", str(spec), "--input", "3x16x16", "--force").exit_code == 0
    assert spec.read_text().startswith("# tests.import_models:small()")


def test_a_bad_argument_is_a_usage_error(tmp_path):
    result = run_import("tests.import_models:small", "-o", str(tmp_path / "s.yaml"), "--arg", "num_classes")
    assert result.exit_code == 2 and "--arg must be NAME=VALUE" in result.output

"""Graphs: layers that name their inputs, merges, several outputs; checked in pure Python and
generated as named intermediates (torch) and the functional API (Keras)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from netspec import check_file, emit
from netspec.analysis.checker import check
from netspec.errors import SpecError
from netspec.language.loader import LoadedSpec
from netspec.language.spec import NetSpec, SpecSource

from .conftest import BAD_SPECS_DIR, ROOT

GRAPH = BAD_SPECS_DIR / "graph.yaml"


def checked(layers: list[dict], **spec):
    document = {"name": "g", "input": [3, 16, 16], "layers": layers, **spec}
    return check(SpecSource(NetSpec.model_validate(document), LoadedSpec({}, {}, "<test>")))


def test_the_readme_graph_example_checks():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"  ```yaml\n  layers:\n(.*?)  ```", readme, re.S).group(1)
    layers = yaml.safe_load("layers:\n" + block)["layers"]
    net = checked(layers)
    assert net.layer("residual").inputs == ("conv2", "stem")
    assert net.layer("shortcut").inputs == ("input",)
    assert net.layer("joined").output_shape == (12, 16, 16)
    assert net.output_shape == (10,)


def test_a_chain_is_still_a_chain():
    """Without inputs: every layer takes the previous one, as before graphs existed."""
    net = check_file(ROOT / "specs" / "alexnet.yaml")
    assert net.spec.is_chain
    assert [cl.inputs for cl in net.layers[:2]] == [("input",), ("conv1",)]


def test_merges_count_their_additions_and_the_receptive_field_takes_the_widest_path():
    net = checked([
        {"name": "wide", "type": "conv2d", "out_channels": 4, "kernel_size": 7, "padding": 3},
        {"name": "narrow", "type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "inputs": "input"},
        {"name": "total", "type": "add", "inputs": ["wide", "narrow", "narrow"]},
    ])
    total = net.layer("total")
    assert total.macs == 2 * 4 * 16 * 16
    assert total.receptive_field == (7, 7)
    assert total.input_shapes == ((4, 16, 16), (4, 16, 16), (4, 16, 16))


def test_a_gate_broadcasts_over_height_and_width():
    net = checked([
        {"name": "features", "type": "conv2d", "out_channels": 6, "kernel_size": 1},
        {"name": "squeeze", "type": "global_avgpool2d", "keepdims": True},
        {"name": "gate", "type": "conv2d", "out_channels": 6, "kernel_size": 1, "activation": "hardsigmoid"},
        {"name": "scaled", "type": "multiply", "inputs": ["gate", "features"]},
    ])
    assert net.layer("scaled").output_shape == (6, 16, 16)
    assert net.layer("squeeze").receptive_field is None  # sees the whole image


@pytest.mark.torch
def test_torch_forward_has_one_variable_per_layer_and_returns_every_output():
    import torch

    from netspec.codegen.backend import get_backend

    layers = [{"name": "a", "type": "conv2d", "out_channels": 4, "kernel_size": 3},
              {"name": "b", "type": "maxpool2d", "kernel_size": 2, "inputs": "input"},
              {"name": "pool", "type": "global_avgpool2d", "inputs": "a"}]
    net = checked(layers, outputs=["pool", "b"])
    backend = get_backend("torch")
    source = backend.emit(net)
    assert "        a = self.a(x)  # 4×14×14\n" in source
    assert "        return (pool, b)\n" in source
    assert "-> tuple[torch.Tensor, ...]:" in source
    pool, b = backend.load(net)(torch.randn(2, 3, 16, 16))
    assert tuple(pool.shape) == (2, 4) and tuple(b.shape) == (2, 3, 8, 8)


@pytest.mark.keras
def test_keras_model_returns_every_output(tmp_path):
    from netspec.codegen.backend import get_backend

    layers = [{"name": "a", "type": "conv2d", "out_channels": 4, "kernel_size": 3},
              {"name": "b", "type": "maxpool2d", "kernel_size": 2, "inputs": "input"},
              {"name": "pool", "type": "global_avgpool2d", "inputs": "a"}]
    net = checked(layers, outputs=["pool", "b"])
    model = get_backend("keras").load(net)
    assert [tuple(t.shape[1:]) for t in model.outputs] == [(4,), (8, 8, 3)]


def test_check_json_gives_each_layers_inputs_and_the_outputs():
    from typer.testing import CliRunner

    from netspec.cli import app

    result = CliRunner().invoke(app, ["check", str(GRAPH), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["joined"]["inputs"] == ["branch_a", "branch_b", "branch_c"]
    assert layers["branch_c"]["inputs"] == ["input"]
    assert report["outputs"] == ["fc"]


def test_generated_graph_code_reads_like_hand_written_code(monkeypatch):
    monkeypatch.chdir(ROOT)
    source = emit(GRAPH.relative_to(ROOT))
    assert "residual = conv2 + relu0" in source
    assert "joined = torch.cat([branch_a, branch_b, branch_c], dim=1)" in source
    assert "scaled = joined * excite" in source
    assert "conv1 = F.hardswish(self.conv1(relu0))" in source


def test_training_a_network_with_two_outputs_is_refused_at_outputs(write_spec, tmp_path):
    from typer.testing import CliRunner

    from netspec.cli import app

    spec = write_spec("""
        name: two-heads
        input: [3, 8, 8]
        layers:
          - {name: a, type: conv2d, out_channels: 4, kernel_size: 3}
          - {name: pool, type: global_avgpool2d}
          - {name: fc, type: linear, out_features: 10}
        outputs: [fc, pool]
        """)
    result = CliRunner().invoke(app, ["train", str(spec), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "training needs one output (the class scores), but the spec names 2: fc, pool" in result.output
    assert not (tmp_path / "run").exists()


def test_the_inference_peak_keeps_a_tensor_until_its_last_consumer():
    net = checked([
        {"name": "a", "type": "conv2d", "out_channels": 4, "kernel_size": 1},              # 1,024 values
        {"name": "b", "type": "conv2d", "out_channels": 8, "kernel_size": 1},              # 2,048
        {"name": "c", "type": "conv2d", "out_channels": 4, "kernel_size": 1},              # 1,024
        {"name": "total", "type": "add", "inputs": ["c", "a"]},                            # 1,024
    ])
    # while b runs: a (still needed by total), b; the input (768) is gone after a
    assert net.totals.inference_peak_bytes == 4 * max(768 + 1024, 1024 + 2048, 1024 + 2048 + 1024,
                                                      1024 + 1024 + 1024)


def test_two_independent_mistakes_in_two_branches_are_both_reported(write_spec):
    """A layer whose shape cannot be inferred stops only what depends on it: the other branch is
    still checked (the checker used to stop at the first), and nothing after the join is guessed."""
    spec = write_spec("""
        name: two-mistakes
        input: [3, 8, 8]
        layers:
          - {name: left, type: conv2d, out_channels: 4, kernel_size: 11}
          - {name: left_pool, type: maxpool2d, kernel_size: 2}
          - {name: right, type: conv2d, out_channels: 4, kernel_size: 3, inputs: input}
          - {name: right_pool, type: maxpool2d, kernel_size: 9}
          - {name: join, type: concat, inputs: [left_pool, right_pool]}
          - {name: fc, type: linear, in_features: 7, out_features: 2}
    """)
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    assert [(p.layer, p.location.line) for p in caught.value.problems] == [("left", 4), ("right_pool", 7)]

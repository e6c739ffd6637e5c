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
    ("tests.import_models:gives_a_list", "error: sums: its forward takes 0 tensors"),
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


def test_a_vision_transformer_reads_as_tokens_a_class_token_and_named_repeats(tmp_path):
    """ViT's patchify (reshape and permute), its class token (expand and cat), its position
    embedding (an add of a held tensor), x[:, 0], and nn.MultiheadAttention(x, x, x) become the
    catalogue's layers; the encoder's named blocks one repeat."""
    spec = tmp_path / "vit.yaml"
    result = run_import("tests.import_models:small_vit", "-o", str(spec))
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(spec.read_text())
    assert [layer["type"] for layer in document["layers"] if "type" in layer] == \
        ["conv2d", "to_tokens", "class_token", "select"]
    assert {"name": "class_token", "type": "class_token"} in document["layers"]
    encoder = document["modules"]["encoder"]["layers"]
    assert encoder[0] == {"name": "pos_embedding", "type": "position_embedding"}
    assert {"name": "layers", "module": "encoder_block", "repeat": 3, "names": "encoder_layer_{i}"} in encoder
    attention = document["modules"]["encoder_block"]["layers"][1]
    assert attention == {"name": "self_attention", "type": "multihead_attention", "num_heads": 2}


def test_regnets_named_blocks_and_sums_in_either_order_become_one_definition(tmp_path):
    """RegNet names its blocks block1-0 (only `names:` can write that) and adds proj + f where a
    block projects, x + f where it does not: one definition with a flag either way."""
    spec = tmp_path / "regnet.yaml"
    result = run_import("torchvision.models.regnet_x_400mf", "-o", str(spec), "--input", "3x32x32")
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(spec.read_text())
    stages = document["modules"]["trunk_output"]["layers"]
    assert [(s["name"], s["module"], s["names"]) for s in stages] == \
        [(f"block{i}", "res_bottleneck_block", f"block{i}-{{i}}") for i in range(1, 5)]
    assert [s["repeat"] for s in stages] == [1, 2, 7, 12]
    assert [name for name in document["modules"] if name.startswith("res_bottleneck")] == ["res_bottleneck_block"]


def test_swin_reads_its_window_attention_and_patch_merging(tmp_path):
    spec = tmp_path / "swin.yaml"
    result = run_import("tests.import_models:small_swin", "-o", str(spec), "--input", "3x32x32")
    assert result.exit_code == 0, result.output
    block = yaml.safe_load(spec.read_text())["modules"]["swin_transformer_block"]
    attention = next(layer for layer in block["layers"] if layer["name"] == "attn")
    assert attention["type"] == "window_attention" and attention["window_size"] == 4
    # the two stochastic depths of a block drop with one probability: one param, written twice
    depths = [layer["p"] for layer in block["layers"] if layer.get("type") == "stochastic_depth"]
    assert depths == ["${p}", "${p}"]
    assert "patch_merge" in spec.read_text()


@pytest.mark.parametrize("model", ["vit_b_16", "resnet50", "mobilenet_v2"])
def test_imported_torchvision_specs_are_at_most_twice_as_long_as_the_zoos(tmp_path, model):
    from netspec.language.catalog import spec_path

    spec = tmp_path / f"{model}.yaml"
    result = run_import(f"torchvision.models.{model}", "-o", str(spec), "--input", "3x224x224")
    assert result.exit_code == 0, result.output
    written = len(spec.read_text().splitlines())
    assert written <= 2 * len(spec_path(model).read_text().splitlines())


def test_the_round_trip_varies_weights_that_would_hide_a_layer(tmp_path, monkeypatch):
    """ViT's head starts at zero, so every output is zero whatever the encoder computes: the round
    trip compares a probe whose constant tensors are drawn at random, and a GELU read as ReLU (a
    mutant of the importer) is refused."""
    from netspec_torch import importer

    monkeypatch.setitem(importer.MODULE_LAYERS, "GELU", lambda module, where: {"type": "relu"})
    spec = tmp_path / "vit.yaml"
    result = run_import("tests.import_models:small_vit", "-o", str(spec))
    assert result.exit_code == 2 and "does not reproduce the original" in result.output
    assert not spec.exists()


def test_a_model_whose_output_ignores_its_input_cannot_be_verified(tmp_path):
    spec = tmp_path / "dead.yaml"
    result = run_import("tests.import_models:dead", "-o", str(spec), "--input", "3x8x8")
    assert result.exit_code == 2 and "the round trip cannot tell" in result.output and "--no-verify" in result.output
    assert not spec.exists()
    assert run_import("tests.import_models:dead", "-o", str(spec), "--input", "3x8x8", "--no-verify").exit_code == 0


@pytest.mark.keras
def test_a_keras_application_becomes_a_spec_with_its_layer_names_verified_in_both_frameworks(tmp_path):
    spec = tmp_path / "mobilenet.yaml"
    result = run_import("keras.applications.MobileNetV2", "-o", str(spec), "--arg", "weights=null",
                        "--arg", "input_shape=[32,32,3]", "--arg", "alpha=0.35")
    assert result.exit_code == 0, result.output
    assert "the spec's PyTorch model agrees with its Keras model" in result.output
    layers = {layer["name"]: layer for layer in yaml.safe_load(spec.read_text())["layers"]}
    # ZeroPadding2D ((0, 1), (0, 1)) then a valid stride-2 depthwise convolution: TensorFlow's 'same'
    assert "block_1_pad" not in layers
    assert layers["block_1_depthwise"] | {"inputs": None} == {
        "name": "block_1_depthwise", "type": "conv2d", "out_channels": 48, "kernel_size": 3, "stride": 2,
        "padding": "same", "groups": 48, "bias": False, "inputs": None}
    assert layers["Conv_1_bn"]["momentum"] == 0.001 and layers["out_relu"]["type"] == "relu6"


@pytest.mark.keras
def test_a_keras_models_weights_file_rebuilds_it_in_pytorch(tmp_path):
    import numpy as np
    import torch

    import netspec
    from tests.import_models import small_keras

    spec, weights = tmp_path / "small.yaml", tmp_path / "small.safetensors"
    result = run_import("tests.import_models:small_keras", "-o", str(spec), "--weights", str(weights))
    assert result.exit_code == 0, result.output
    layers = yaml.safe_load(spec.read_text())["layers"]
    assert [layer["name"] for layer in layers] == ["conv", "bn", "relu", "pool", "flatten", "fc"]
    assert layers[0]["padding"] == 1 and layers[0]["activation"] == "relu" and layers[3]["padding"] == "same"
    # the file holds the factory's weights: a model built again from the same seed has them
    import keras

    keras.utils.set_random_seed(3)
    original = small_keras()
    keras.utils.set_random_seed(3)
    assert run_import("tests.import_models:small_keras", "-o", str(spec), "--weights", str(weights),
                      "--force").exit_code == 0
    model = netspec.build(spec, weights=weights).eval()
    x = np.random.default_rng(0).standard_normal((2, 12, 12, 3)).astype("float32")
    expected = np.asarray(original(x))
    with torch.no_grad():
        got = model(torch.from_numpy(np.moveaxis(x, -1, 1).copy())).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected - expected.mean(axis=0)).max() > 1e-3


@pytest.mark.keras
def test_a_dense_after_flatten_gets_its_rows_in_channels_first_order(tmp_path, monkeypatch):
    """The spec's Keras model flattens channels first, as PyTorch does: copied as they are, the
    original's kernel rows (height, width, channels) compute something else, which the round trip
    refuses (a mutant of the reader)."""
    from netspec_keras import importer

    monkeypatch.setattr(importer.KerasModelReader, "weights",
                        lambda self, model: {layer.name: layer.get_weights() for layer in model.layers
                                             if layer.get_weights()})
    result = run_import("tests.import_models:small_keras", "-o", str(tmp_path / "s.yaml"))
    assert result.exit_code == 2 and "does not reproduce the original" in result.output


@pytest.mark.keras
@pytest.mark.parametrize(("target", "message"), [
    ("tests.import_models:keras_pool_after_linear", "error: pool: a max pool after zero padding of values that may "
                                                    "be negative has no netspec layer"),
    ("keras.applications.EfficientNetB0", "error: rescaling: Rescaling has no netspec layer"),
])
def test_what_a_keras_model_has_no_layer_for_is_refused(tmp_path, target, message):
    result = run_import(target, "-o", str(tmp_path / "k.yaml"), "--arg", "weights=null") \
        if target.startswith("keras.") else run_import(target, "-o", str(tmp_path / "k.yaml"))
    assert result.exit_code == 2, result.output
    assert message in result.output and not (tmp_path / "k.yaml").exists()


def _export_onnx(model, shape, path):
    import torch

    with torch.no_grad():
        torch.onnx.export(model.eval(), (torch.randn(1, *shape),), str(path), dynamo=True, verbose=False)


@pytest.mark.onnx
def test_an_onnx_export_of_a_torchvision_model_becomes_a_spec_whose_weights_reproduce_it(tmp_path):
    import numpy as np
    import torch
    import torchvision

    import netspec
    from netspec_torch.importer import probe_model

    # batch norm with statistics, as in a trained network: the exporter folds it into the convolutions
    original = probe_model(torchvision.models.resnet18(num_classes=10), (3, 32, 32))
    _export_onnx(original, (3, 32, 32), tmp_path / "resnet18.onnx")
    spec, weights = tmp_path / "resnet18.yaml", tmp_path / "resnet18.safetensors"
    result = run_import(str(tmp_path / "resnet18.onnx"), "-o", str(spec), "--weights", str(weights))
    assert result.exit_code == 0, result.output
    assert "verified:" in result.output
    document = yaml.safe_load(spec.read_text())
    # the module tree the exporter notes on each node, put back: ResNet's block once, its stages repeats
    assert list(document["modules"]) == ["downsample", "basic_block"] and document["class_name"] == "ResNet"
    block = document["modules"]["basic_block"]["layers"]
    # the batch norms, folded by the exporter into the convolutions: each a convolution with a bias
    assert [layer["name"] for layer in block] == ["conv1", "relu", "conv2", "downsample", "add", "relu_1"]
    assert block[0] == {"name": "conv1", "type": "conv2d", "out_channels": "${out_channels}", "kernel_size": 3,
                        "stride": "${stride}", "padding": 1}
    assert {"name": "layer2", "module": "basic_block", "repeat": 2, "params": {"out_channels": 128},
            "first": {"stride": 2, "downsample": True}} in document["layers"]
    assert document["layers"][-1] == {"name": "fc", "type": "linear", "out_features": 10}
    model = netspec.build(spec, weights=weights).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype("float32"))
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(model(x), model(torch.randn(2, 3, 32, 32)), atol=1e-2)


@pytest.mark.onnx
def test_an_onnx_operator_without_a_layer_is_refused_by_its_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="first"), helper.make_node("Erf", ["r"], ["y"], name="odd")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    onnx.save(helper.make_model(graph), tmp_path / "odd.onnx")
    result = run_import(str(tmp_path / "odd.onnx"), "-o", str(tmp_path / "odd.yaml"))
    assert result.exit_code == 2 and "error: odd: the ONNX operator Erf (as used here) has no netspec layer" in \
        result.output
    assert not (tmp_path / "odd.yaml").exists()


@pytest.mark.onnx
def test_an_onnx_node_read_as_the_wrong_layer_is_caught_by_the_round_trip(tmp_path, monkeypatch):
    import torchvision

    from netspec.importing import onnx_reader

    _export_onnx(torchvision.models.squeezenet1_1(num_classes=10), (3, 32, 32), tmp_path / "squeeze.onnx")
    result = run_import(str(tmp_path / "squeeze.onnx"), "-o", str(tmp_path / "right.yaml"))
    assert result.exit_code == 0, result.output
    # the classifier's dropout, which the file leaves out, kept as an identity: its conv stays number 1
    classifier = yaml.safe_load((tmp_path / "right.yaml").read_text())["modules"]["classifier"]["layers"]
    assert [layer.get("type") for layer in classifier] == ["identity", "conv2d", "relu", "global_avgpool2d"]
    monkeypatch.setitem(onnx_reader.SIMPLE, "Relu", "relu6")
    result = run_import(str(tmp_path / "squeeze.onnx"), "-o", str(tmp_path / "s.yaml"))
    assert result.exit_code == 2 and "does not reproduce the file" in result.output


def test_timms_norm_and_activation_modules_become_batch_norms_with_their_activation(tmp_path):
    """timm computes its norms in its own modules (BatchNormAct2d: the norm's weights on the module,
    then its activation): one catalogue batch norm with `activation:`, verified like any import."""
    pytest.importorskip("timm")
    spec = tmp_path / "efficientnet.yaml"
    result = run_import("timm.create_model", "--arg", "model_name=efficientnet_b0", "--arg", "num_classes=10",
                        "-o", str(spec), "--input", "3x32x32")
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(spec.read_text())
    assert document["name"] == "efficientnet_b0"
    assert {"name": "bn1", "type": "batchnorm2d", "activation": "silu"} in document["layers"]


def test_densenets_layers_called_on_every_earlier_output_read_as_concats(tmp_path):
    """DenseNet calls each layer on the list of all earlier outputs, which the layer concatenates
    first: the concat is written where the list is made, and the layer is one definition."""
    spec = tmp_path / "densenet.yaml"
    result = run_import("tests.import_models:small_densenet", "-o", str(spec), "--input", "3x32x32")
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(spec.read_text())
    block = document["modules"]["dense_block"]["layers"]
    assert block[:3] == [{"name": "denselayer1", "module": "dense_layer"},
                         {"name": "concat", "type": "concat", "inputs": ["input", "denselayer1"]},
                         {"name": "denselayer2", "module": "dense_layer"}]
    assert [name for name in document["modules"] if name.startswith("dense_layer")] == ["dense_layer"]


@pytest.mark.parametrize(("weights", "message"), [
    ("same", "-o and --weights both name"),
    ("w.pth", "netspec import writes a .safetensors file"),
    ("/proc/w.safetensors", "cannot write"),  # a real failure to write: /proc takes no new files
])
def test_the_spec_is_written_with_its_weights_or_not_at_all(tmp_path, weights, message):
    spec = tmp_path / "small.yaml"
    target = str(spec) if weights == "same" else weights if weights.startswith("/") else str(tmp_path / weights)
    result = run_import("tests.import_models:small", "-o", str(spec), "--input", "3x16x16", "--weights", target)
    assert result.exit_code == 2 and message in result.output, result.output
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_holds_no_graph_is_refused_as_such(tmp_path):
    state = tmp_path / "resnet.pth"
    state.write_bytes(b"not a graph")
    result = run_import(str(state), "-o", str(tmp_path / "r.yaml"))
    assert result.exit_code == 2 and "is not a .pt2, .keras or .onnx file" in result.output


@pytest.mark.keras
def test_a_keras_sequential_model_with_an_input_is_read_as_its_graph(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                              keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(2, name="fc")],
                             name="seq")
    model.save(tmp_path / "seq.keras")
    spec = tmp_path / "seq.yaml"
    result = run_import(str(tmp_path / "seq.keras"), "-o", str(spec))
    assert result.exit_code == 0, result.output
    assert [layer["name"] for layer in yaml.safe_load(spec.read_text())["layers"]] == ["conv", "pool", "fc"]
    (tmp_path / "junk.keras").write_bytes(b"junk")
    result = run_import(str(tmp_path / "junk.keras"), "-o", str(tmp_path / "junk.yaml"))
    assert result.exit_code == 2 and "is not a .keras archive" in result.output


# --- saved torch.export programs (.pt2) ----------------------------------------------------------

def _export_program(model, shape, path):
    import torch

    torch.export.save(torch.export.export(model.eval(), (torch.randn(1, *shape),)), str(path))


def _tiny_vit():
    import torchvision

    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=16, mlp_dim=32, num_classes=10)


def _tiny_densenet():
    import torchvision

    return torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=8, bn_size=2,
                                       num_classes=10)


@pytest.mark.parametrize("build, callable_target, note", [
    (lambda: __import__("torchvision").models.resnet18(num_classes=10), "torchvision.models.resnet18", None),
    (_tiny_vit, "tests.test_import:_tiny_vit", "an attention's dropout, written as 0 "
                                               "(encoder.layers.encoder_layer_0.self_attention, "),
    (_tiny_densenet, "tests.test_import:_tiny_densenet", None),
    (lambda: __import__("torchvision").models.shufflenet_v2_x0_5(num_classes=10),
     "torchvision.models.shufflenet_v2_x0_5", "modules that ran no operation (an identity, a stochastic depth in "
                                              "inference), left out (stage2.1.branch1, "),
], ids=["resnet18", "vit", "densenet", "shufflenet"])
def test_a_saved_program_becomes_the_spec_its_python_model_does(tmp_path, build, callable_target, note):
    """The module tree a .pt2 keeps gives the same spec as the live model (its blocks, repeats,
    the residuals, ViT's class token and attention, DenseNet's concatenated inputs, ShuffleNet's
    channel shuffle, which the program saves as views and a transpose), and its
    weights reproduce the program, checked here apart from the round trip."""
    import numpy as np
    import torch

    import netspec
    from netspec_torch.importer import probe_model

    original = probe_model(build(), (3, 32, 32))  # statistics and weights that show every layer
    _export_program(original, (3, 32, 32), tmp_path / "model.pt2")
    spec, weights = tmp_path / "model.yaml", tmp_path / "model.safetensors"
    result = run_import(str(tmp_path / "model.pt2"), "-o", str(spec), "--weights", str(weights))
    assert result.exit_code == 0, result.output
    assert "verified:" in result.output and "the program" not in result.output
    live = tmp_path / "live.yaml"
    arguments = ["--arg", "num_classes=10"] if callable_target.startswith("torchvision") else []
    assert run_import(callable_target, "-o", str(live), "--input", "3x32x32", "--no-verify", *arguments).exit_code == 0
    header = spec.read_text().split("\nname: ", 1)[0]
    assert (note in header) if note else "not in the program" not in header  # what inference does not record
    body = spec.read_text().split("\nname: ", 1)[1].split("\n", 1)[1]  # the header and name apart
    assert body == live.read_text().split("\nname: ", 1)[1].split("\n", 1)[1]
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    model = netspec.build(spec, weights=weights).eval()
    rows = np.random.default_rng(0).standard_normal((2, 1, 3, 32, 32)).astype("float32")
    with torch.no_grad():
        for row in rows:
            torch.testing.assert_close(model(torch.from_numpy(row)), program(torch.from_numpy(row)),
                                       rtol=1e-4, atol=1e-4)
        assert not torch.allclose(model(torch.from_numpy(rows[0])), model(torch.from_numpy(rows[1])), atol=1e-3)


def test_a_saved_swin_reads_back_its_window_attention_and_patch_merging(tmp_path):
    """Swin's attention is saved as some forty operations and its patch merging as strided slices:
    the attention is made again from its tensors (heads and window from the bias table, the shift
    from the roll), the merging recognized; its stochastic depth, which inference skips, is named."""
    import torchvision

    from netspec_torch.importer import probe_model

    swin = torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                                              window_size=[4, 4], num_classes=10)
    _export_program(probe_model(swin, (3, 64, 64)), (3, 64, 64), tmp_path / "swin.pt2")
    spec = tmp_path / "swin.yaml"
    result = run_import(str(tmp_path / "swin.pt2"), "-o", str(spec))
    assert result.exit_code == 0, result.output
    text = spec.read_text()
    block = yaml.safe_load(text)["modules"]["swin_transformer_block"]
    attention = next(layer for layer in block["layers"] if layer["name"] == "attn")
    assert attention == {"name": "attn", "type": "window_attention", "num_heads": "${num_heads}", "window_size": 4,
                         "shift": "${shift}"}
    features = yaml.safe_load(text)["modules"]["features"]["layers"]
    assert features[1:] == [
        {"module": "swin_transformer_block", "repeat": 2, "params": {"shift": 2}, "first": {"shift": 0}},
        {"module": "patch_merging"},
        {"module": "swin_transformer_block", "repeat": 2, "params": {"num_heads": 4, "shift": 2},
         "first": {"shift": 0}}]
    assert yaml.safe_load(text)["modules"]["patch_merging"]["layers"][0] == {"name": "patch_merge",
                                                                            "type": "patch_merge"}
    assert "a stochastic depth in inference), left out (features.1.0.stochastic_depth" in text.split("\nname: ")[0]


def test_a_module_fx_cannot_trace_for_a_shape_is_read_from_torch_export(tmp_path):
    spec = tmp_path / "branching.yaml"
    result = run_import("tests.import_models:shape_branching", "-o", str(spec), "--input", "3x8x8")
    assert result.exit_code == 0, result.output
    text = spec.read_text()
    assert "# read with torch.export where torch.fx cannot trace: pool." in text
    assert yaml.safe_load(text)["modules"]["pools_when_large"]["layers"] == [
        {"name": "maxpool2d", "type": "maxpool2d", "kernel_size": 2},
        {"name": "conv", "type": "conv2d", "out_channels": 6, "kernel_size": 3}, {"name": "relu", "type": "relu"}]


def test_a_program_in_training_mode_is_refused_and_a_varying_batch_is_read(tmp_path):
    import torch
    import torchvision

    model = torchvision.models.resnet18(num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "train.pt2"))
    result = run_import(str(tmp_path / "train.pt2"), "-o", str(tmp_path / "train.yaml"))
    assert result.exit_code == 2 and "was exported from a model in training mode" in result.output
    assert "model.eval()" in result.output and not (tmp_path / "train.yaml").exists()
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model.eval(), (x,), dynamic_shapes={"x": {0: batch}}),
                      str(tmp_path / "any_batch.pt2"))
    result = run_import(str(tmp_path / "any_batch.pt2"), "-o", str(tmp_path / "any.yaml"))
    assert result.exit_code == 0 and "verified:" in result.output, result.output
    assert yaml.safe_load((tmp_path / "any.yaml").read_text())["input"] == [3, 32, 32]


def test_a_program_read_back_wrong_is_caught_by_the_round_trip_against_the_program(tmp_path, monkeypatch):
    import torchvision
    from torch import nn

    from netspec_torch import exported

    _export_program(torchvision.models.squeezenet1_1(num_classes=10), (3, 32, 32), tmp_path / "squeeze.pt2")
    monkeypatch.setitem(exported.LEAF_MODULES, "ReLU", exported.Leaf(("relu",), lambda g, t: nn.ReLU6()))
    result = run_import(str(tmp_path / "squeeze.pt2"), "-o", str(tmp_path / "s.yaml"))
    assert result.exit_code == 2, result.output
    assert "does not reproduce the program" in result.output and not (tmp_path / "s.yaml").exists()


def test_what_a_program_cannot_give_back_is_refused_by_its_module(tmp_path):
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LocalResponseNorm(2), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    _export_program(model, (3, 8, 8), tmp_path / "lrn.pt2")
    result = run_import(str(tmp_path / "lrn.pt2"), "-o", str(tmp_path / "lrn.yaml"))
    assert result.exit_code == 2, result.output
    assert "error: 1: its LocalResponseNorm (saved as " in result.output
    assert "cannot be read back from a program" in result.output and not (tmp_path / "lrn.yaml").exists()
    result = run_import(str(tmp_path / "lrn.pt2"), "-o", str(tmp_path / "lrn.yaml"), "--input", "3x16x16")
    assert result.exit_code == 2 and "the program takes inputs of 3x8x8, not 3x16x16" in result.output


def test_a_program_that_would_run_pickled_code_is_refused_before_it_runs(tmp_path):
    """A .pt2 is a zip whose weights may be pickles (torch.export.load unpickles them in full);
    netspec import reads tensors only. A weight here is a pickle that creates a file when loaded."""
    import json
    import pickle
    import zipfile

    from torch import nn

    _export_program(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (3, 8, 8), tmp_path / "good.pt2")
    marker = tmp_path / "pickle-ran"

    class Opens:
        def __reduce__(self):
            return open, (str(marker), "w")

    with zipfile.ZipFile(tmp_path / "good.pt2") as good, zipfile.ZipFile(tmp_path / "bad.pt2", "w") as bad:
        items = {item.filename: (item, good.read(item)) for item in good.infolist()}
        config_name = next(name for name in items if name.endswith("weights/model_weights_config.json"))
        config = json.loads(items[config_name][1])
        config["config"]["0.bias"]["use_pickle"] = True  # its bytes, a pickle torch.load would run
        weight = f"weights/{config['config']['0.bias']['path_name']}"
        for name, (item, data) in items.items():
            bad.writestr(item, json.dumps(config).encode() if name == config_name else
                         pickle.dumps(Opens()) if name.endswith(weight) else data)
    result = run_import(str(tmp_path / "bad.pt2"), "-o", str(tmp_path / "bad.yaml"))
    assert result.exit_code == 2, result.output
    assert not marker.exists() and not (tmp_path / "bad.yaml").exists()
    assert "only pickle can load" in result.output or "cannot read" in result.output
    (tmp_path / "junk.pt2").write_bytes(b"junk")
    result = run_import(str(tmp_path / "junk.pt2"), "-o", str(tmp_path / "junk.yaml"))
    assert result.exit_code == 2 and "cannot read" in result.output and "as a torch.export program" in result.output


@pytest.mark.onnx
def test_an_onnx_file_without_module_notes_is_read_as_a_flat_list_that_says_why(tmp_path):
    """DenseNet's layers take the list of earlier outputs: from the notes, the concat moves to the
    caller, as from the live model; without the notes (another exporter), every node is one layer
    of a flat list, and the spec's header says why."""
    import onnx

    from netspec_torch.importer import probe_model

    _export_onnx(probe_model(_tiny_densenet(), (3, 32, 32)), (3, 32, 32), tmp_path / "dense.onnx")
    spec = tmp_path / "dense.yaml"
    result = run_import(str(tmp_path / "dense.onnx"), "-o", str(spec))
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(spec.read_text())
    assert list(document["modules"]) == ["dense_layer", "dense_block", "transition", "features"]
    assert document["modules"]["dense_layer"]["layers"][0] == {"name": "norm1", "type": "batchnorm2d"}
    block = document["modules"]["dense_block"]["layers"]
    assert block[1] == {"name": "concat", "type": "concat", "inputs": ["input", "denselayer1"]}
    model = onnx.load(str(tmp_path / "dense.onnx"))
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.save(model, tmp_path / "bare.onnx")
    result = run_import(str(tmp_path / "bare.onnx"), "-o", str(tmp_path / "bare.yaml"))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "bare.yaml").read_text()
    assert "a flat list: the module tree could not be recovered (the file does not note the modules its nodes " \
           "came from)" in text
    assert "modules" not in yaml.safe_load(text) and len(yaml.safe_load(text)["layers"]) == 36


@pytest.mark.onnx
def test_an_onnx_file_of_the_torchscript_exporter_is_read_as_a_flat_list(tmp_path):
    """PyTorch's older exporter (dynamo=False) names initializers again through Identity nodes and
    notes no modules: a flat list, verified."""
    import torch
    import torchvision

    with torch.no_grad():
        torch.onnx.export(torchvision.models.squeezenet1_1(num_classes=10).eval(), (torch.randn(1, 3, 32, 32),),
                          str(tmp_path / "old.onnx"), dynamo=False)
    result = run_import(str(tmp_path / "old.onnx"), "-o", str(tmp_path / "old.yaml"))
    assert result.exit_code == 0 and "verified:" in result.output, result.output
    assert "a flat list: the module tree could not be recovered" in (tmp_path / "old.yaml").read_text()

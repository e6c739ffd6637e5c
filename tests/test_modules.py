"""Modules: reusable sub-networks with params, repeat and optional parts, expanded into scoped
layers; torchvision's resnet18 and googlenet written as specs load its state dicts strictly and
give the same outputs."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netspec import check_file, load_spec
from netspec.errors import SpecError, WeightsError

from .conftest import ROOT, ZOO_BASES, ZOO_SPECS, small_input

RESNET18 = ROOT / "specs" / "zoo" / "resnet18.yaml"
RESNET152 = ROOT / "specs" / "zoo" / "resnet152.yaml"
GOOGLENET = ROOT / "specs" / "zoo" / "googlenet.yaml"
SMALL_INPUT = (3, 64, 64)  # the architectures work at 64×64; a quicker forward pass than 224×224

BLOCKS = """
    name: blocks
    input: [3, 16, 16]
    modules:
      shortcut:
        sequential: true
        params: {planes: null, stride: 1}
        layers:
          - {type: conv2d, out_channels: "${planes}", kernel_size: 1, stride: "${stride}", bias: false}
          - {type: batchnorm2d}
      block:
        params: {planes: 8, stride: 1, project: false}
        layers:
          - {name: conv1, type: conv2d, out_channels: "${planes}", kernel_size: 3, stride: "${stride}", padding: 1}
          - {name: conv2, type: conv2d, out_channels: "${planes * 2}", kernel_size: 3, padding: 1, activation: relu6}
          - {name: proj, module: shortcut, inputs: input, when: "${project}",
             params: {planes: "${planes * 2}", stride: "${stride}"}}
          - {name: add, type: add, inputs: [conv2, proj]}
    layers:
      - {name: stem, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}
      - {name: stage, module: block, repeat: 3, params: {planes: 4}, first: {stride: 2, project: true}}
      - {name: pool, type: global_avgpool2d}
      - {name: fc, type: linear, out_features: 5}
"""


def test_a_use_is_a_scope_and_repeat_stamps_it(write_spec):
    net = check_file(write_spec(BLOCKS))
    names = [cl.name for cl in net.layers]
    assert names[:6] == ["stem", "stage.0.conv1", "stage.0.conv2", "stage.0.proj.0", "stage.0.proj.1", "stage.0.add"]
    assert "stage.1.proj.0" not in names  # left out: the add takes the block's input instead
    assert net.layer("stage.1.add").inputs == ("stage.1.conv2", "stage.0.add")
    assert net.layer("stage.0.conv1").output_shape == (4, 8, 8)  # `first` strides the first repetition
    assert net.layer("stage.2.conv2").output_shape == (8, 8, 8)  # ${planes * 2}
    assert net.layer("fc").inputs == ("pool",)
    line = net.layer("stage.2.conv1").location.line
    assert line == net.layer("stage.0.conv1").location.line == 13  # where the module defines it


@pytest.mark.parametrize(("edit", "message", "hint"), [
    ("module: block,", "there is no module named 'blok'", "did you mean 'block'?"),
    ("params: {planes: 4}", "module 'block' has no param 'plane'", "did you mean 'planes'?"),
    ("repeat: 3", "'repeat' must be an integer from 1 to 1024, got 0", None),
    ("name: stem,", "the name 'st.em' holds a '.', which netspec keeps for the scopes of modules (layer1.0.conv1)",
     "try 'st_em'"),
])
def test_mistakes_in_uses_are_located(write_spec, edit, message, hint):
    wrong = {"module: block,": "module: blok,", "params: {planes: 4}": "params: {plane: 4}",
             "repeat: 3": "repeat: 0", "name: stem,": "name: st.em,"}[edit]
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(BLOCKS.replace(edit, wrong, 1)))
    found = {(p.message, p.hint) for p in caught.value.problems}
    assert (message, hint) in found, found


def test_an_undefined_param_in_a_module_names_the_use(write_spec):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(BLOCKS.replace('"${planes * 2}", kernel_size: 3', '"${plane * 2}", kernel_size: 3')))
    [problem] = caught.value.problems  # one mistake, one problem, however many uses
    assert problem.message == ("undefined param '${plane}' (and in 2 more uses of the module: "
                               "stage.1.conv2, stage.2.conv2)")
    assert (problem.layer, problem.hint, problem.location.line) == ("stage.0.conv2", "did you mean 'planes'?", 14)


def test_a_required_module_param_must_be_given(write_spec):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(BLOCKS.replace('params: {planes: "${planes * 2}", stride: "${stride}"}',
                                            'params: {stride: "${stride}"}')))
    assert caught.value.problems[0].message == "module 'shortcut' needs a value for its param 'planes'"


def test_a_misspelt_param_in_a_modules_default_is_named_where_it_is_written(write_spec):
    spec = BLOCKS.replace("params: {planes: 8, stride: 1, project: false}",
                          'params: {planes: 8, stride: 1, project: false, wide: "${widht * 2}"}')
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec("    params: {width: 4}" + spec))
    [problem] = caught.value.problems  # not also "needs a value for its param 'wide'" at the use
    assert problem.message == "undefined param '${widht}' in the default of module 'block'"
    assert (problem.hint, problem.location.line) == ("did you mean 'width'?", 12)
    from netspec.language.loader import load_spec_document

    fixed = load_spec_document(write_spec("    params: {width: 4}" + spec.replace("widht", "width")))
    assert fixed.modules.definitions["block"].params["wide"] == 8


@pytest.mark.parametrize(("value", "message"), [
    ("null", "'when' must be true or false, got null"),
    ('"yes"', "'when' must be true or false, got 'yes'"),
])
def test_when_takes_only_true_or_false(write_spec, value, message):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(BLOCKS.replace('when: "${project}"', f"when: {value}")))
    [problem] = caught.value.problems
    assert problem.message == message + " (and in 2 more uses of the module: stage.1.proj, stage.2.proj)"


@pytest.mark.parametrize("modules", [False, True])
def test_when_leaves_out_a_spec_layer_with_or_without_modules(write_spec, modules):
    spec = """
        name: optional_relu
        input: [3, 8, 8]
        params: {use_relu: false}
        layers:
          - {name: conv, type: conv2d, out_channels: 4, kernel_size: 3}
          - {name: relu, type: relu, when: "${use_relu}"}
          - {name: pool, type: global_avgpool2d}
    """ + ("""
        modules:
          unused: {layers: [{type: relu}]}
    """ if modules else "")
    left_out = check_file(write_spec(spec))
    assert [cl.name for cl in left_out.layers] == ["conv", "pool"]
    kept = check_file(write_spec(spec), overrides=["use_relu=true"])
    assert [cl.name for cl in kept.layers] == ["conv", "relu", "pool"]


def test_the_resolved_spec_keeps_the_modules_and_reloads_to_the_same_network(write_spec, tmp_path):
    from netspec.train.launch import _resolved_spec_text

    net = check_file(write_spec(BLOCKS))
    text = _resolved_spec_text(net)
    assert "modules:" in text and "stage.0.conv1" not in text
    again = check_file(write_spec(text, "again.yaml"))
    assert [(cl.name, cl.output_shape, cl.params) for cl in again.layers] == \
        [(cl.name, cl.output_shape, cl.params) for cl in net.layers]


def test_module_definitions_and_uses_are_typed_models_that_the_schema_is_made_from():
    """The keys a definition and a use take, their kinds and the published schema come from one
    place: the pydantic models that validate them."""
    from netspec.language.modules import DEFINITION_KEYS, USE_KEYS, ModuleDefinitionFormat, ModuleUseFormat
    from netspec.language.schema import json_schema

    schema = json_schema()
    assert set(schema["$defs"]["ModuleUse"]["properties"]) == set(USE_KEYS) == set(ModuleUseFormat.model_fields)
    definition = schema["properties"]["modules"]["additionalProperties"]
    assert set(definition["properties"]) == set(DEFINITION_KEYS) == set(ModuleDefinitionFormat.model_fields)
    assert schema["$defs"]["ModuleUse"]["properties"]["repeat"]["anyOf"][0]["anyOf"][0]["maximum"] == 1024


def test_check_json_gives_scoped_names(write_spec):
    from netspec.analysis.report import summary_json

    report = summary_json(check_file(write_spec(BLOCKS)))
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["stage.0.proj.1"]["inputs"] == ["stage.0.proj.0"]
    assert (layers["stage.0.proj.1"]["scope"], layers["stage.2.add"]["scope"], layers["fc"]["scope"]) == \
        ("stage.0.proj", "stage.2", None)


def test_check_json_gives_the_module_uses_as_a_tree_with_their_totals():
    from netspec.analysis.report import summary_json

    net = check_file(ROOT / "specs" / "zoo" / "resnet18.yaml")
    report = summary_json(net)
    [layer1, layer2, layer3, layer4] = report["modules"]
    assert (layer2["path"], layer2["module"], layer2["repeat"], layer2["params"]) == ("layer2", "basic_block", 2, None)
    first, second = layer2["children"]
    assert first["params"] == {"planes": 128, "stride": 2, "downsample": True} and second["params"]["stride"] == 1
    [downsample] = first["children"]  # a use nested in a use
    assert (downsample["path"], downsample["layers"]) == ("layer2.0.downsample",
                                                          ["layer2.0.downsample.0", "layer2.0.downsample.1"])
    assert "layer2.0.downsample.0" not in first["layers"] and first["layers"][0] == "layer2.0.conv1"
    assert second["children"] == []
    # the totals add up: every layer is counted once, in the use that holds it or at the top
    weights = {cl.name: cl.params + cl.non_trainable for cl in net.layers}
    assert first["total_params"] == sum(v for k, v in weights.items() if k.startswith("layer2.0."))
    top_level = sum(v for k, v in weights.items() if "." not in k)
    assert sum(n["total_params"] for n in report["modules"]) + top_level == sum(weights.values())
    assert sum(n["total_macs"] for n in report["modules"]) + sum(cl.macs for cl in net.layers if "." not in cl.name) \
        == net.totals.macs
    blocks = summary_json(check_file(ROOT / "specs" / "alexnet-torchvision.yaml"))["modules"]
    # each layer says which of its values the spec wrote as an expression, as written in the module
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["layer2.0.conv1"]["written"] == {"out_channels": "${planes}", "stride": "${stride}"}
    assert layers["fc"]["written"] == {"out_features": "${num_classes}"} and layers["conv1"]["written"] == {}
    assert [(b["path"], b["params"], b["children"]) for b in blocks] == [
        ("features", {}, []), ("avgpool", {}, []), ("flatten", {}, []), ("classifier", {}, [])]  # single-use modules
    assert blocks[0]["layers"][0] == "conv1" and sum(b["total_macs"] for b in blocks) > 0


@pytest.mark.torch
def test_one_class_per_module_with_what_differs_as_arguments(write_spec):
    import torch

    from netspec.codegen.backend import get_backend

    net = check_file(write_spec(BLOCKS))
    source = get_backend("torch").emit(net)
    # the module's params with their defaults, which a use then leaves out
    signature = "def __init__(self, in_channels: int, planes: int = 8, stride: int = 1, project: bool = False)"
    assert f"class Block(nn.Module):\n    {signature}" in source
    assert "self.conv2 = nn.Conv2d(planes, planes * 2, kernel_size=3, padding=1)" in source
    assert "self.proj = Shortcut(in_channels=in_channels, planes=planes * 2, stride=stride) if project else None" \
        in source
    assert "proj = self.proj(x) if self.proj is not None else x" in source
    assert "Block(in_channels=8, planes=4, stride=2, project=True)," in source
    assert source.count("Block(in_channels=8, planes=4),") == 2
    model = get_backend("torch").load(net)
    assert model.stage[0].proj is not None and model.stage[1].proj is None
    assert tuple(model(torch.randn(2, 3, 16, 16)).shape) == (2, 5)


TORCHVISION_ZOO = {  # spec -> how torchvision builds the same network
    "resnet18": lambda tv: tv.resnet18(), "resnet34": lambda tv: tv.resnet34(),
    "resnet50": lambda tv: tv.resnet50(), "resnet101": lambda tv: tv.resnet101(),
    "resnet152": lambda tv: tv.resnet152(), "resnext50_32x4d": lambda tv: tv.resnext50_32x4d(),
    "wide_resnet50_2": lambda tv: tv.wide_resnet50_2(),
    "googlenet": lambda tv: tv.googlenet(aux_logits=False, init_weights=False),
    "squeezenet1_0": lambda tv: tv.squeezenet1_0(), "squeezenet1_1": lambda tv: tv.squeezenet1_1(),
    "vgg11": lambda tv: tv.vgg11(), "vgg16": lambda tv: tv.vgg16(), "vgg16_bn": lambda tv: tv.vgg16_bn(),
    "mobilenet_v2": lambda tv: tv.mobilenet_v2(), "efficientnet_b0": lambda tv: tv.efficientnet_b0(),
    "densenet121": lambda tv: tv.densenet121(), "regnet_y_400mf": lambda tv: tv.regnet_y_400mf(),
    "mnasnet1_0": lambda tv: tv.mnasnet1_0(), "convnext_tiny": lambda tv: tv.convnext_tiny(),
    "convnext_small": lambda tv: tv.convnext_small(), "convnext_base": lambda tv: tv.convnext_base(),
    # the position embedding has one row per token, so the model is built for the input tested
    "vit_b_16": lambda tv: tv.vit_b_16(image_size=SMALL_INPUT[1]),
    "vit_b_32": lambda tv: tv.vit_b_32(image_size=SMALL_INPUT[1]),
    "vit_l_16": lambda tv: tv.vit_l_16(image_size=SMALL_INPUT[1]),
    "mobilenet_v3_large": lambda tv: tv.mobilenet_v3_large(), "mobilenet_v3_small": lambda tv: tv.mobilenet_v3_small(),
    "regnet_x_400mf": lambda tv: tv.regnet_x_400mf(), "efficientnet_v2_s": lambda tv: tv.efficientnet_v2_s(),
    "shufflenet_v2_x1_0": lambda tv: tv.shufflenet_v2_x1_0(), "swin_t": lambda tv: tv.swin_t(),
    "inception_v3": lambda tv: tv.inception_v3(aux_logits=False, transform_input=True, init_weights=False),
    "swin_s": lambda tv: tv.swin_s(), "swin_b": lambda tv: tv.swin_b(), "maxvit_t": lambda tv: tv.maxvit_t(),
}

# the auxiliary classifier torchvision counts in Inception-v3's published parameters, which only
# training uses and the spec leaves out (its MACs are not counted: torchvision counts evaluation's)
AUXILIARY_HEADS = {"inception_v3": lambda tv: sum(p.numel() for p in tv.inception_v3(init_weights=False).AuxLogits
                                                  .parameters())}

# torchvision's PatchMerging registers its Linear before the LayerNorm it applies first; a spec's
# modules register their layers in the order they run, so only the set of keys is the same
REGISTERED_OUT_OF_ORDER = {"swin_t", "swin_s", "swin_b"}

# One-change mutants of each zoo spec written out in full (the variants extend these), which the
# equality test must catch: an activation swapped, a residual dropped.
RELU6 = ("activation: relu}", "activation: relu6}")
ZOO_MUTANTS = {
    "mobilenet_v2": [("activation: relu6}", "activation: relu}"),
                     ('when: "${stride == 1 and inp == out}"', "when: false")],
    "googlenet": [RELU6], "densenet121": [RELU6], "resnet50": [RELU6], "regnet_y_400mf": [RELU6],
    "mnasnet1_0": [RELU6, ('when: "${stride == 1 and inp == out}"', "when: false")],
    "resnet18": [("{name: relu, type: relu}", "{name: relu, type: relu6}")],
    "efficientnet_b0": [("activation: silu}", "activation: relu}"),
                        ('p: "${stochastic_depth * number / 16}"', 'p: "${stochastic_depth * number / 15}"')],
    "squeezenet1_0": [("activation: relu}", "activation: gelu}")],
    "squeezenet1_1": [("activation: relu}", "activation: gelu}")], "vgg16": [("{type: relu}", "{type: gelu}")],
    "convnext_tiny": [("{type: gelu}", "{type: relu}"), ("{type: layernorm, eps: 1.0e-6}", "{type: layernorm}"),
                      ('number: "${start + repetition}"', 'number: "${start}"')],
    # an eps of 1e-5 for 1e-6 is below the tolerance where a token's features vary by about 1: 0.1 is not
    "vit_b_16": [("{type: gelu}", "{type: relu}"),
                 ("{name: ln_1, type: layernorm, eps: 1.0e-6}", "{name: ln_1, type: layernorm, eps: 0.1}"),
                 ("heads: 12", "heads: 8"), ("inputs: [dropout, input]", "inputs: [dropout, ln_1]")],
    "efficientnet_v2_s": [("activation: silu}", "activation: relu}"), ('p: "${sd * number / 40}"', 'p: "${sd / 40}"'),
                          ('{module: projection, params: {out: "${out}"}, when: "${t != 1}"}', '{module: projection, '
                           'params: {out: "${out}"}, when: "${t != 1}"}\n      - {type: relu, when: "${t != 1}"}')],
    "shufflenet_v2_x1_0": [("type: channel_shuffle, groups: 2}", "type: channel_shuffle, groups: 4}"),
                           ("type: chunk, chunks: 2, index: 0,", "type: chunk, chunks: 2, index: 1,")],
    "swin_t": [("{type: gelu}", "{type: relu}"),
               ("{name: norm1, type: layernorm}", "{name: norm1, type: layernorm, eps: 0.1}"),
               ('shift: "${window // 2 * (repetition % 2)}"', "shift: 0"),
               ("{name: merge, type: patch_merge}", "{name: merge, type: patch_merge}\n      - {type: relu}")],
    "inception_v3": [("scale: [\"${0.229 / 0.5}\"", "scale: [\"${0.229 / 0.6}\""),
                     ("{name: bn, type: batchnorm2d, eps: 0.001, activation: relu}",
                      "{name: bn, type: batchnorm2d, eps: 0.001, activation: relu6}"),
                     ("name: branch3x3_2b, module: conv, inputs: branch3x3_1,",
                      "name: branch3x3_2b, module: conv, inputs: branch3x3_2a,")],
    "maxvit_t": [("{type: gelu}", "{type: relu}"), ("[{type: layernorm}, {type: relative_attention",
                                                    "[{type: layernorm, eps: 0.1}, {type: relative_attention"),
                 ('num_heads: "${dim // head_dim}"', 'num_heads: "${dim // head_dim // 2}"'),
                 ("params: {dim: \"${out}\", by: grid,", "params: {dim: \"${out}\", by: window,")],
    "mobilenet_v3_large": [("out: 80, act: hardswish, stride: 2}", "out: 80, act: relu, stride: 2}"),
                           ('when: "${stride == 1 and inp == out}"', "when: false"),
                           ("activation: hardsigmoid}", "activation: sigmoid}")],
}


def test_every_zoo_spec_has_its_torchvision_twin_in_the_tests():
    assert sorted(TORCHVISION_ZOO) == sorted(p.stem for p in ZOO_SPECS)
    assert sorted(ZOO_MUTANTS) == sorted(p.stem for p in ZOO_BASES)
    assert all("extends" not in yaml.safe_load(p.read_text()) for p in ZOO_BASES)


@pytest.mark.torch
@pytest.mark.parametrize(("spec", "factory"), [(ROOT / "specs" / "zoo" / f"{name}.yaml", factory)
                                               for name, factory in TORCHVISION_ZOO.items()],
                         ids=list(TORCHVISION_ZOO))
def test_torchvision_state_dicts_load_strictly_and_give_the_same_outputs(spec, factory, tmp_path):
    import torch
    import torchvision

    import netspec

    from .torch_helpers import calibrated_batchnorm, input_dependence

    torch.manual_seed(0)
    shape = small_input(spec, SMALL_INPUT[1])
    reference = calibrated_batchnorm(factory(torchvision.models), shape)
    path = tmp_path / "tv.pth"
    torch.save(reference.state_dict(), path)
    model = netspec.build(spec, weights=path, input_shape=shape).eval()  # strict: every tensor
    if spec.stem in REGISTERED_OUT_OF_ORDER:
        assert sorted(model.state_dict()) == sorted(reference.state_dict())
    else:
        assert list(model.state_dict()) == list(reference.state_dict())
    net = check_file(spec, input_shape=shape)  # ViT's position embedding has a row per token
    assert net.totals.trainable_params == sum(p.numel() for p in reference.parameters())
    # buffers apart, as torchvision keeps them: the running statistics (not the step counters, nor
    # Swin's relative position index, which both frameworks compute from the window)
    assert net.totals.non_trainable_params == sum(b.numel() for name, b in reference.named_buffers()
                                                  if not name.endswith(("num_batches_tracked",
                                                                        "relative_position_index")))
    x = torch.randn(2, *shape)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert input_dependence(expected) > 1e-3  # a hundred times the tolerance: the input decides the output
    # stochastic depth acts only in training: its rates (ConvNeXt's grow block by block) compared as they are
    rates = stochastic_depth_rates(model)
    assert rates == {name: p for name, p in stochastic_depth_rates(reference).items() if name in rates}
    # (torchvision builds one in every MBConv block, and applies it only where there is a residual)
    assert bool(rates) == bool(stochastic_depth_rates(reference))
    for old, new in ZOO_MUTANTS.get(spec.stem, []):  # and the comparison sees one change to the spec
        assert old in spec.read_text()
        mutant = tmp_path / spec.name
        mutant.write_text(spec.read_text().replace(old, new, 1))
        try:
            wrong_model = netspec.build(mutant, weights=path, input_shape=shape).eval()
        except WeightsError:  # its tensors have other shapes (MaxViT's bias table has a column per head)
            continue
        with torch.no_grad():
            wrong = wrong_model(x)
        assert not torch.allclose(wrong, expected, rtol=1e-5, atol=1e-5) or \
            stochastic_depth_rates(wrong_model) != rates, f"the mutant {old} -> {new} passes"


@pytest.mark.torch
@pytest.mark.parametrize("spec", ZOO_SPECS, ids=lambda p: p.stem)
def test_check_agrees_with_torchvisions_published_parameters_and_operations(spec):
    """torchvision's weights metadata gives each model's parameters and GMACs (`_ops`, at the
    input its weights were trained for, the spec's): the parameters exactly, the MACs within 1%.
    Attention counts as torchvision counts it (ViT-B/16: 17.56 G, where torchinfo says 0.17 G)."""
    import torchvision

    meta = torchvision.models.get_model_weights(spec.stem).DEFAULT.meta
    totals = check_file(spec).totals
    left_out = AUXILIARY_HEADS[spec.stem](torchvision.models) if spec.stem in AUXILIARY_HEADS else 0
    assert totals.trainable_params == meta["num_params"] - left_out
    assert totals.macs / 1e9 == pytest.approx(meta["_ops"], rel=0.01)


def stochastic_depth_rates(model) -> dict[str, set[float]]:
    """The stochastic depth rates of each module that holds any (Swin applies one module to both of
    a block's branches, where a spec writes one layer per branch)."""
    rates: dict[str, set[float]] = {}
    for name, module in model.named_modules():
        if type(module).__name__ == "StochasticDepth":
            rates.setdefault(name.rpartition(".")[0], set()).add(module.p)
    return rates


def test_each_module_is_one_keras_builder_function_called_per_use():
    """As keras-applications writes ``dense_block(x, blocks, name)``: DenseNet-121's 58 dense layers
    are one function called in a loop, so its Keras source is about as long as its torch source
    (unrolled, it was 1,469 lines to torch's 157)."""
    from netspec.codegen.backend import get_backend

    net = check_file(ROOT / "specs" / "zoo" / "densenet121.yaml")
    keras_source, torch_source = get_backend("keras").emit(net), get_backend("torch").emit(net)
    assert len(keras_source.splitlines()) <= 2 * len(torch_source.splitlines())
    assert keras_source.count("def dense_layer(x, name: str):") == 1
    assert keras_source.count("keras.layers.Conv2D(") == 4  # the stem's, the dense layer's two, the transition's
    assert "    for n in range(1, 25):\n" \
           '        x = dense_layer(x, name=f"{name}.denseblock3.denselayer{n}")\n' in keras_source
    assert 'x = transition(x, name=f"{name}.transition3", out=512)' in keras_source
    # a dense layer's input is concatenated with its output: named variables, where a chain is written on x
    assert "    cat = keras.layers.Concatenate(axis=-1, name=f\"{name}.cat\")([x, conv2])\n" in keras_source
    # a variable does not hide the function of the same name
    assert 'features_ = features(x, name="features")' in keras_source


def test_what_differs_between_uses_is_a_keras_builder_functions_argument(write_spec):
    from netspec.codegen.backend import get_backend

    keras_source = get_backend("keras").emit(check_file(write_spec(BLOCKS)))
    assert "def block(x, name: str, planes: int = 8, stride: int = 1, project: bool = False):" in keras_source
    assert 'Conv2D(planes * 2, 3, activation="relu6", name=f"{name}.conv2")' in keras_source
    assert "    proj = x\n    if project:\n" \
           '        proj = shortcut(x, name=f"{name}.proj", planes=planes * 2, stride=stride)\n' in keras_source
    assert 'stage = block(stem, name="stage.0", planes=4, stride=2, project=True)' in keras_source
    assert 'stage = block(stage, name="stage.2", planes=4)' in keras_source


KERNELS = """
    name: kernels
    input: [3, 16, 16]
    modules:
      cb:
        params: {out: null, k: 3}
        layers:
          - {name: conv, type: conv2d, out_channels: "${out}", kernel_size: "${k}", padding: "${(k - 1) // 2}"}
          - {name: bn, type: batchnorm2d, activation: relu}
    layers:
      - {name: a, module: cb, params: {out: 4}}
      - {name: b, module: cb, params: {out: 6, k: 5}}
      - {name: c, module: cb, params: {out: 8, k: 1}}
"""


def test_a_keras_builder_function_pads_as_its_arguments_say(write_spec):
    """A padding the spec writes from the module's params is written from the function's arguments
    too: one function for every kernel size, never a hard-coded padding beside a kernel argument
    whose default would then build another layer (from a fresh-eyes trial)."""
    from netspec.codegen.backend import get_backend

    source = get_backend("keras").emit(check_file(write_spec(KERNELS)))
    assert "def cb(x, name: str, out: int, k: int = 3):" in source and "def cb_2" not in source
    assert 'keras.layers.ZeroPadding2D((k - 1) // 2, name=f"{name}.conv_pad")(x)' in source
    assert 'b = cb(a, name="b", out=6, k=5)' in source and 'c = cb(b, name="c", out=8, k=1)' in source


def test_a_zoo_spec_is_short(write_spec):
    """Modules and repeats instead of copies: each zoo spec reads in one screen (70 lines: MobileNetV3's
    table has 15 rows), the deeper and wider ResNets as a few lines of `extends`."""
    for spec in ZOO_SPECS:
        document = yaml.safe_load(spec.read_text())
        # MaxViT also writes torchvision's two wrappers of one child each (MaxVitBlock.layers,
        # MaxVitLayer.layers), which its state-dict names need
        assert len(spec.read_text().splitlines()) <= (100 if spec.stem == "maxvit_t" else 70)
        assert document.get("modules") or document.get("extends")


def test_the_readme_zoo_table_states_what_check_finds_and_what_was_measured():
    readme = (ROOT / "README.md").read_text()
    measured = json.loads((ROOT / "benchmarks" / "results" / "check_speed.json").read_text())["results"]
    rows = re.findall(r"^\| `(specs/zoo/[\w-]+\.yaml)` \| (\d+) \| ([\d,]+) \| ([\d.]+) G \| ([\d.]+) s \|",
                      readme, re.M)
    assert {row[0] for row in rows} == {str(p.relative_to(ROOT)) for p in ZOO_SPECS}
    for spec, layers, params, macs, seconds in rows:
        net = check_file(ROOT / spec)
        assert (len(net.layers), f"{net.totals.trainable_params:,}", f"{net.totals.macs / 1e9:.2f}") == \
            (int(layers), params, macs)
        assert f"{measured[f'netspec check --json: {spec}']['median_s']:.2f}" == seconds


TRAINABLE = (BLOCKS.replace("input: [3, 16, 16]", "input: [3, 16, 16]\n    training: {epochs: 2, batch_size: 16}")
             .replace("out_features: 5", "out_features: 10"))


@pytest.mark.torch
@pytest.mark.parametrize("backend", ["torch", pytest.param("keras", marks=pytest.mark.keras)])
def test_a_modular_spec_trains_and_resumes_to_the_same_metrics(write_spec, tmp_path, backend):
    """The run keeps the spec with its modules (not their expansion) and resumes from it alone."""
    from .test_training import comparable, train

    if backend == "keras":
        pytest.importorskip("keras")
    spec = write_spec(TRAINABLE)
    whole = train(spec, tmp_path / "whole", backend=backend, max_steps=2)
    train(write_spec(TRAINABLE.replace("epochs: 2", "epochs: 1"), "one.yaml"), tmp_path / "split", backend=backend,
          max_steps=2)
    info = json.loads((tmp_path / "split" / "run.json").read_text())
    assert "modules" in (tmp_path / "split" / "spec.yaml").read_text() and info["max_steps"] == 2
    from netspec.train import TrainOptions
    from netspec.train.launch import RunRequest, train_run

    resumed = train_run(RunRequest(resume=tmp_path / "split", epochs=2,
                                   options=TrainOptions(device="cpu", progress=False))).records
    assert comparable(resumed) == comparable(whole)


@pytest.mark.parametrize(("body", "message"), [
    ("modules: [1, 2]\nlayers: [{name: a, type: relu}]", "'modules' must map module names to their definitions"),
    ("modules: {m: {layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m, repeat: true}]",
     "'repeat' must be an integer from 1 to 1024, got True"),
    ("modules: {m: {layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m, when: 3}]",
     "'when' must be true or false, got 3"),
    ("modules: {m: {params: {p: 1}, layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m, first: {p: 2}}]",
     "'first' sets params of the first repetition, so it needs 'repeat'"),
    ("modules: {m: {layers: [{name: r, type: relu}], extra: 1}}\nlayers: [{name: a, module: m}]",
     "unknown key 'extra' in module 'm'"),
    ("modules: {m: {layers: [{name: r, type: relu}]}}\nblocks: [{name: b, layers: [{name: a, module: m}]}]",
     "modules are used in a flat 'layers:' list, not inside blocks"),
    ("modules: {m: {sequential: true, layers: [{name: r, type: relu}, {name: s, type: relu, inputs: r}]}}\n"
     "layers: [{name: a, module: m}]", "a sequential module is a chain: its layers take no 'inputs'"),
    ("modules: {m: {params: {self: 1}, layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m}]",
     "module 'm' cannot have a param named 'self'"),
    ("modules: {m: {layers: [{name: r, type: relu}, {name: again, module: m}]}}\nlayers: [{name: a, module: m}]",
     "modules nest more than 16 deep (a module that uses itself?)"),
    ("modules: {a: {layers: [{name: r, type: relu}]}, b: {layers: [{name: x1, module: a, repeat: 1024}]},\n"
     "          c: {layers: [{name: x2, module: b, repeat: 1024}]}}\nlayers: [{name: top, module: c, repeat: 1024}]",
     "the modules expand to more than 20,000 layers"),
    ("modules: {m: {layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m, inline: true}]",
     "'inline' numbers a use's contents in the sequential module around it, and this use is not in one"),
    ("modules: {m: {layers: [{name: r, type: relu}]},\n"
     "          s: {sequential: true, layers: [{module: m, inline: 1}]}}\nlayers: [{name: a, module: s}]",
     "'inline' must be true or false, got 1"),
    ("modules: {m: {layers: [{name: r, type: relu}]},\n"
     "          s: {sequential: true, layers: [{module: m, inline: true, repeat: 2, names: 'b{n}'}]}}\n"
     "layers: [{name: a, module: s}]", "an inline use's repetitions are numbered in the sequence around it"),
    ("modules: {m: {layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m, names: 'b{n}'}]",
     "'names' names the repetitions, so it needs 'repeat'"),
    ("modules: {m: {layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m, repeat: 2, names: block}]",
     "'names' must be a pattern with one of {n} or {i}, got 'block'"),
    ("modules: {m: {layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m, repeat: 2, names: '{n}x'}]",
     "'names: {n}x' does not give valid names ('1x')"),
    ("modules: {m: {layers: [{name: r, type: relu, when: '${1 < 2 < 3}'}]}}\nlayers: [{name: a, module: m}]",
     "comparisons cannot be chained"),
    ("modules: {m: {layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: 3}]",
     "'module' names a module declared under 'modules:', got 3"),
    ("modules: {m: {layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m, params: [1]}]",
     "'params' of a use of a module must be a mapping of names to values"),
    ("modules: {m: {layers: []}}\nlayers: [{name: a, module: m}]", "module 'm' needs 'layers' (a non-empty list)"),
    ("modules: {m: {layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m, repat: 2}]",
     "unknown key 'repat' in a use of a module"),
], ids=["not-a-mapping", "repeat-bool", "when-number", "first-without-repeat", "unknown-key", "in-blocks",
        "sequential-inputs", "param-self", "recursion", "repeat-bomb", "inline-outside-sequential",
        "inline-number", "inline-names", "names-without-repeat", "names-without-counter", "names-invalid",
        "chained-comparison", "module-not-a-name", "use-params-not-a-mapping", "no-layers", "misspelt-key"])
def test_hostile_or_mistaken_modules_are_refused_with_a_located_message(write_spec, body, message):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(f"name: t\ninput: [3, 8, 8]\n{body}\n"))
    assert any(message in p.message and p.location.line for p in caught.value.problems), caught.value.format()


def test_a_misspelt_key_of_a_use_or_a_definition_gets_a_did_you_mean(write_spec):
    for body in ("modules: {m: {layers: [{name: r, type: relu}]}}\nlayers: [{name: a, module: m, repat: 2}]",
                 "modules: {m: {layers: [{name: r, type: relu}], sequental: true}}\nlayers: [{name: a, module: m}]"):
        with pytest.raises(SpecError) as caught:
            load_spec(write_spec(f"name: t\ninput: [3, 8, 8]\n{body}\n"))
        [problem] = caught.value.problems
        assert problem.hint in ("did you mean 'repeat'?", "did you mean 'sequential'?"), problem.hint


@st.composite
def modular_networks(draw):
    """A module whose widths, strides, padding, activation and optional shortcut and merge vary
    between its uses, used one to three times, repeated or not."""
    width = draw(st.sampled_from(["${c}", "${c * 2}", "${c + 1}", 4]))
    body = [{"name": "conv1", "type": "conv2d", "out_channels": width, "kernel_size": draw(st.sampled_from([1, 3])),
             "stride": draw(st.sampled_from(["${s}", 1])), "padding": draw(st.sampled_from([0, 1, "same"])),
             "bias": draw(st.booleans())},
            {"name": "bn", "type": "batchnorm2d", "activation": draw(st.sampled_from([None, "relu", "hardswish"]))},
            {"name": "conv2", "type": "conv2d", "out_channels": draw(st.sampled_from(["${c}", "${c * 2}", 3])),
             "kernel_size": 1}]
    merge = draw(st.sampled_from([None, "add", "concat"]))
    if merge:
        body.append({"name": "proj", "type": "conv2d", "out_channels": body[-1]["out_channels"], "kernel_size": 1,
                     "stride": body[0]["stride"], "inputs": "input", "when": draw(st.sampled_from(["${d}", True]))})
        body.append({"name": "join", "type": merge, "inputs": ["conv2", "proj"],
                     "when": draw(st.sampled_from([True, "${d}", "${d and s == 1}", "${c > 2}"]))})
    uses = []
    for i in range(draw(st.integers(1, 3))):
        use = {"name": f"u{i}", "module": "blk",
               "params": {"c": draw(st.integers(1, 4)), "s": draw(st.integers(1, 2)), "d": draw(st.booleans())}}
        if draw(st.booleans()):
            use.update(repeat=draw(st.integers(1, 3)), first={"d": True})
        uses.append(use)
    return {"name": "random-modules", "input": [draw(st.integers(1, 3)), 12, 12],
            "modules": {"blk": {"params": {"c": 2, "s": 1, "d": False}, "layers": body}},
            "layers": [*uses, {"name": "pool", "type": "global_avgpool2d"},
                       {"name": "fc", "type": "linear", "out_features": 3}]}


@pytest.mark.torch
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=modular_networks())
def test_generated_module_classes_build_what_the_checker_says(tmp_path, document):
    """Whatever differs between the uses, the classes' constructor arguments rebuild each use
    exactly: every layer's output shape, parameters and buffers in torch equal the checker's."""
    import torch

    from netspec.codegen.backend import get_backend

    from .torch_helpers import per_layer

    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        net = check_file(path)
    except SpecError as error:  # a merge of shapes that do not fit
        assert all(p.message and p.location for p in error.problems)
        return
    backend = get_backend("torch")
    measured, _ = per_layer(backend, net, backend.load(net), torch.randn(2, *net.input_shape))
    assert measured == [(cl.output_shape, cl.params, cl.non_trainable) for cl in net.layers]


SQUEEZE_EXCITE = """
    name: se-net
    input: [3, 8, 8]
    modules:
      block:
        params: {se: true}
        layers:
          - {name: conv, type: conv2d, out_channels: 6, kernel_size: 3, padding: 1}
          - {name: squeeze, type: global_avgpool2d, keepdims: true, when: "${se}"}
          - {name: excite, type: conv2d, out_channels: 6, kernel_size: 1, activation: hardsigmoid, when: "${se}"}
          - {name: scale, type: multiply, inputs: [conv, excite], when: "${se}"}
    layers:
      - {name: with_se, module: block}
      - {name: without_se, module: block, params: {se: false}}
      - {name: pool, type: global_avgpool2d}
"""


@pytest.mark.torch
def test_a_left_out_merge_passes_its_first_input_on(write_spec):
    import torch

    from netspec.codegen.backend import get_backend

    net = check_file(write_spec(SQUEEZE_EXCITE))
    names = [cl.name for cl in net.layers]
    assert "with_se.scale" in names and "without_se.scale" not in names
    assert net.layer("without_se.conv").inputs == ("with_se.scale",)
    assert net.layer("pool").inputs == ("without_se.conv",)  # the features, without the gate
    model = get_backend("torch").load(net)
    assert tuple(model(torch.randn(2, 3, 8, 8)).shape) == (2, 6)
    assert sum(p.numel() for p in model.parameters()) == net.totals.trainable_params


def test_the_readmes_new_family_example_checks(tmp_path):
    """The README's worked example of a variant, saved next to a copy of resnet50.yaml."""
    readme = (ROOT / "README.md").read_text()
    text = re.search(r"```yaml\n# specs/zoo/resnet50-cifar.yaml\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "resnet50.yaml").write_text((ROOT / "specs" / "zoo" / "resnet50.yaml").read_text())
    (tmp_path / "resnet50-cifar.yaml").write_text(text)
    net = check_file(tmp_path / "resnet50-cifar.yaml")
    assert net.input_shape == (3, 32, 32) and net.output_shape == (10,)
    assert "maxpool" not in [cl.name for cl in net.layers]
    assert net.layer("layer1.0.conv1").inputs == ("relu",)
    assert net.layer("conv1").output_shape == (64, 32, 32)


FLAT_STAGES = """
    name: flat-stages
    input: [3, 16, 16]
    params: {batch_norm: false}
    modules:
      conv:  # one convolution, its optional batch norm and its ReLU
        sequential: true
        params: {width: null}
        layers:
          - {type: conv2d, out_channels: "${width}", kernel_size: 3, padding: 1}
          - {type: batchnorm2d, when: "${batch_norm}"}
          - {type: relu}
      residual:
        params: {width: null, stride: 1}
        layers:
          - {name: conv, type: conv2d, out_channels: "${width}", kernel_size: 3, padding: 1, stride: "${stride}"}
          - {name: add, type: add, inputs: [conv, input], when: "${stride == 1}"}
      stage:
        sequential: true
        params: {width: null, convs: null}
        layers:
          - {module: conv, repeat: "${convs}", params: {width: "${width}"}, inline: true}
          - {type: maxpool2d, kernel_size: 2}
      features:
        sequential: true
        layers:
          - {module: stage, params: {width: 4, convs: 1}, inline: true}
          - {module: stage, params: {width: 8, convs: 2}, inline: true}
          - {module: residual, repeat: 2, params: {width: 8}, first: {stride: 2}, inline: true}
    layers:
      - {name: features, module: features}
      - {name: blocks, module: residual, repeat: 2, params: {width: 8}, names: "block{n}"}
      - {name: pool, type: global_avgpool2d}
"""


def test_inline_uses_number_their_contents_in_the_enclosing_sequence(write_spec):
    """As torchvision's VGG writes nn.Sequential(*layers): a sequential module's layers, and each
    repetition of any other module, take the next numbers; `names:` names repetitions."""
    net = check_file(write_spec(FLAT_STAGES))
    assert [cl.name for cl in net.layers] == [
        "features.0", "features.1", "features.2",  # stage 1: conv, relu, pool
        "features.3", "features.4", "features.5", "features.6", "features.7",  # stage 2: two convs, pool
        "features.8.conv", "features.9.conv", "features.9.add",  # the residuals: the first strided, no add
        "blocks.block1.conv", "blocks.block1.add", "blocks.block2.conv", "blocks.block2.add", "pool"]
    with_bn = check_file(write_spec(FLAT_STAGES.replace("batch_norm: false", "batch_norm: true"), "bn.yaml"))
    assert [cl.layer.type for cl in with_bn.layers[:4]] == ["conv2d", "batchnorm2d", "relu", "maxpool2d"]


@pytest.mark.torch
@pytest.mark.parametrize("batch_norm", ["false", "true"])
def test_inline_and_named_repetitions_build_torchvisions_state_dict_names(write_spec, batch_norm):
    import torch

    from netspec.codegen.backend import get_backend

    from .torch_helpers import per_layer

    net = check_file(write_spec(FLAT_STAGES.replace("batch_norm: false", f"batch_norm: {batch_norm}")))
    backend = get_backend("torch")
    source = backend.emit(net)
    model = backend.load(net)
    keys = list(model.state_dict())
    assert "features.3.weight" in keys if batch_norm == "false" else "features.5.running_mean" in keys
    assert "blocks.block2.conv.weight" in keys
    # one class for the residual: the add is a flag, as torchvision's use_res_connect
    assert "self.use_add = stride == 1" in source and "add = conv + x if self.use_add else conv" in source
    assert "nn.Sequential(OrderedDict(block1=Residual(" in " ".join(source.split()).replace("( ", "(")
    measured, _ = per_layer(backend, net, model, torch.randn(2, *net.input_shape))
    assert measured == [(cl.output_shape, cl.params, cl.non_trainable) for cl in net.layers]


@pytest.mark.torch
def test_a_module_with_inline_uses_used_nested_gets_a_class_per_body(write_spec):
    """The same stages, each its own nn.Sequential (features.0.0, features.1.2): their bodies
    differ in length, so each gets its own class, and the model is still what the checker says."""
    import torch

    from netspec.codegen.backend import get_backend

    from .torch_helpers import per_layer

    nested = FLAT_STAGES.replace("convs: 1}, inline: true}", "convs: 1}}").replace("convs: 2}, inline: true}",
                                                                                    "convs: 2}}")
    net = check_file(write_spec(nested))
    assert [cl.name for cl in net.layers][:4] == ["features.0.0", "features.0.1", "features.0.2", "features.1.0"]
    backend = get_backend("torch")
    assert "class Stage2(nn.Sequential):" in backend.emit(net)
    model = backend.load(net)
    measured, _ = per_layer(backend, net, model, torch.randn(2, *net.input_shape))
    assert measured == [(cl.output_shape, cl.params, cl.non_trainable) for cl in net.layers]


def test_a_typo_in_a_repeated_use_is_one_located_error(write_spec):
    """Not one per repetition, no knock-on 'needs a value' for the param it misspells, and a typo
    in `first:` located there; a failed condition does not also report 'when' as not true/false."""
    spec = write_spec("""
        name: typo
        input: [3, 16, 16]
        modules:
          cb:
            params: {out: null, stride: 1}
            layers:
              - {name: conv, type: conv2d, out_channels: "${out}", kernel_size: 3, when: "${0 < stride < 2}"}
        layers:
          - {name: blocks, module: cb, repeat: 3, params: {outt: 4}, first: {stridee: 2}}
          - {name: pool, type: global_avgpool2d}
    """)
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    problems = [(p.message, p.location.line, p.location.column) for p in caught.value.problems]
    assert [(m.split(" (and in")[0], line) for m, line, _ in problems] == [
        ("module 'cb' has no param 'outt'", 9), ("module 'cb' has no param 'stridee'", 9),
        ("in ${0 < stride < 2}: comparisons cannot be chained in '0 < stride < 2'", 7)]
    assert problems[1][2] > problems[0][2]  # at `first:`, after `params:`


def test_a_misspelt_input_inside_a_module_suggests_the_modules_own_name(write_spec):
    """The hint names what the module can write (`body`, not `a.body`), and the layer the typo
    meant is not also reported as unused."""
    spec = write_spec("""
        name: typo-input
        input: [3, 16, 16]
        modules:
          blk:
            layers:
              - {name: body, type: conv2d, out_channels: 3, kernel_size: 3, padding: 1}
              - {name: add, type: add, inputs: [bodyy, input]}
        layers:
          - {name: a, module: blk}
          - {name: b, module: blk}
          - {name: pool, type: global_avgpool2d}
    """)
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    [problem] = caught.value.problems
    assert problem.message.startswith("there is no earlier layer named 'bodyy'") and problem.layer == "a.add"
    assert "1 more use of the module: b.add" in problem.message
    assert problem.hint == "did you mean 'body'?" and problem.location.line == 7


def test_a_modules_layer_cannot_take_a_layer_inside_another_use(write_spec):
    """`a.c` exists in the expanded graph, so validation accepted it and Keras ran it, but the
    generated torch class for the module cannot see another use's layers (NameError in forward)."""
    spec = write_spec("""
        name: dotted
        input: [3, 8, 8]
        modules:
          blk:
            layers:
              - {name: c, type: conv2d, out_channels: 3, kernel_size: 3, padding: 1}
              - {name: add, type: add, inputs: [c, a.c]}
        layers:
          - {name: a, module: blk}
          - {name: b, module: blk}
    """)
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    [problem] = caught.value.problems
    assert problem.message.startswith("a module's layer takes 'a.c', which is not one of the module's layers")
    assert (problem.layer, problem.location.line) == ("a.add", 7)


def test_a_use_given_two_inputs_is_refused_at_the_use(write_spec):
    """The module's body sees one 'input': the second was dropped silently, and the error then
    blamed the layer that produced it as unused."""
    spec = write_spec("""
        name: two-inputs
        input: [3, 8, 8]
        modules:
          merge2:
            layers:
              - {name: c, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}
              - {name: add, type: add, inputs: [c, input]}
        layers:
          - {name: x1, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}
          - {name: x2, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1, inputs: input}
          - {name: m, module: merge2, inputs: [x1, x2]}
    """)
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    [problem] = caught.value.problems
    assert problem.message == "module 'merge2' takes one input, and this use gives it 2 (x1, x2)"
    assert (problem.layer, problem.location.line) == ("m", 11) and "concat" in problem.hint
    assert "inputs: [up, skip]" in problem.hint  # or declare them


TWO_INPUTS = """
    name: two-inputs
    input: [3, 16, 16]
    modules:
      conv_bn:
        sequential: true
        params: {out: null}
        layers:
          - {type: conv2d, out_channels: "${out}", kernel_size: 3, padding: 1, bias: false}
          - {type: batchnorm2d, activation: relu}
      fuse:  # a decoder block's shape: the deep map and the skip connection, joined
        inputs: [deep, skip]
        params: {out: null}
        layers:
          - {name: reduce, type: conv2d, out_channels: 4, kernel_size: 1, inputs: deep}
          - {name: join, type: concat, inputs: [reduce, skip]}
          - {name: conv, module: conv_bn, params: {out: "${out}"}}
    layers:
      - {name: stem, module: conv_bn, params: {out: 8}}
      - {name: deep, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}
      - {name: fuse1, module: fuse, inputs: [deep, stem], params: {out: 6}}
      - {name: fuse2, module: fuse, inputs: [fuse1, stem], params: {out: 5}}
      - {name: pool, type: global_avgpool2d}
      - {name: fc, type: linear, out_features: 3}
"""


@pytest.mark.torch
@pytest.mark.keras
def test_a_module_may_declare_several_inputs(write_spec):
    """`inputs: [deep, skip]` names what a use gives, in order: the torch class's forward() takes
    them by those names, the checker, torch and Keras agree layer by layer."""
    import numpy as np
    import torch

    from netspec.codegen.backend import get_backend
    from netspec_keras import set_from_torch_layout

    from .test_keras_backend import keras_per_layer
    from .torch_helpers import calibrated_batchnorm, input_dependence, layer_outputs, per_layer

    net = check_file(write_spec(TWO_INPUTS))
    assert net.layer("fuse2.join").inputs == ("fuse2.reduce", "stem.1")
    assert net.layer("fuse2.reduce").inputs == ("fuse1.conv.1",)
    torch_backend = get_backend("torch")
    source = torch_backend.emit(net)
    assert "def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:" in source
    assert "fuse2 = self.fuse2(fuse1, stem)" in source
    model = calibrated_batchnorm(torch_backend.load(net), net.input_shape)
    x = torch.randn(2, *net.input_shape)
    measured, _ = per_layer(torch_backend, net, model, x)
    assert measured == [(cl.output_shape, cl.params, cl.non_trainable) for cl in net.layers]
    keras_model = get_backend("keras").load(net)
    set_from_torch_layout(keras_model, net, {k: v.numpy() for k, v in model.state_dict().items()})
    expected, _ = layer_outputs(torch_backend, net, model, x)
    actual = keras_per_layer(net, keras_model, x.numpy())
    for cl in net.layers:
        np.testing.assert_allclose(actual[cl.name], expected[cl.name].numpy(), rtol=1e-4, atol=1e-4, err_msg=cl.name)
    assert input_dependence(expected["fc"]) > 1e-3  # the compared output depends on the input
    # a mutant that takes the two inputs the other way round (same shapes, same weights) differs
    swapped = check_file(write_spec(TWO_INPUTS.replace("inputs: [reduce, skip]", "inputs: [skip, reduce]"), "m.yaml"))
    wrong = get_backend("keras").load(swapped)
    set_from_torch_layout(wrong, swapped, {k: v.numpy() for k, v in model.state_dict().items()})
    assert not np.allclose(keras_per_layer(swapped, wrong, x.numpy())["fc"], expected["fc"].numpy(), atol=1e-4)


@pytest.mark.parametrize(("edit", "message", "line"), [
    (("inputs: [deep, stem], params: {out: 6}", "params: {out: 6}"),
     "module 'fuse' takes 2 inputs (deep, skip), and this use gives it 1 (the layer before it, 'deep')", 20),
    (("inputs: [fuse1, stem], params: {out: 5}", "inputs: [fuse1, stem], repeat: 2, params: {out: 5}"),
     "module 'fuse' takes 2 inputs, and a repeated or inline use chains one value", 21),
    (("inputs: [deep, skip]", "inputs: [deep, join]"), "module 'fuse' cannot call an input 'join': a layer", 11),
    (("inputs: [deep, skip]", "inputs: [deep, deep]"), "module 'fuse' cannot call an input 'deep': it is named", 11),
    (("sequential: true\n        params: {out: null}", "sequential: true\n        inputs: [a, b]\n"
      "        params: {out: null}"), "the sequential module 'conv_bn' is a chain, so it takes one input", 6),
    # 'input' would reach the network's input from inside the module: the torch class cannot see it
    (("inputs: deep}", "inputs: input}"), "'input' names nothing in a module that declares its inputs (deep, skip)",
     14),
], ids=["too-few", "repeated", "name-of-a-layer", "twice", "sequential", "network-input"])
def test_a_modules_inputs_are_checked_at_the_definition_and_the_use(write_spec, edit, message, line):
    with pytest.raises(SpecError) as caught:
        check_file(write_spec(TWO_INPUTS.replace(*edit)))
    assert [(p.message[:len(message)], p.location.line) for p in caught.value.problems] == [(message, line)]


LAYERS_USE = """
    name: stack
    input: [3, 8, 8]
    modules:
      body:
        sequential: true
        layers:
          - {type: conv2d, out_channels: 4, kernel_size: 3, padding: 1, bias: false}
          - {type: batchnorm2d}
          - {type: relu}
    layers:
      - {name: layers, module: body}
      - {name: pool, type: global_avgpool2d}
"""


@pytest.mark.torch
@pytest.mark.keras
def test_a_use_may_be_named_layers_as_torchvision_names_its_stacks(write_spec):
    """MNASNet, ViT and MaxViT keep their blocks in `layers`: the generated code never calls a
    bare `layers`, so the name is free (it was refused once per layer inside the use)."""
    import numpy as np
    import torch

    from netspec.codegen.backend import get_backend

    net = check_file(write_spec(LAYERS_USE))
    assert [cl.name for cl in net.layers] == ["layers.0", "layers.1", "layers.2", "pool"]
    model = get_backend("torch").load(net).eval()
    assert list(model.state_dict())[:2] == ["layers.0.weight", "layers.1.weight"]
    keras_model = get_backend("keras").load(net)
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype("float32")
    assert keras_model(x.transpose(0, 2, 3, 1)).shape == model(torch.from_numpy(x)).shape == (2, 4)


@pytest.mark.parametrize(("text", "message"), [
    (LAYERS_USE.replace("name: stack", "name: numpy"), "'numpy', the numpy package in the generated code"),
    (LAYERS_USE.replace("name: layers,", "name: F,"), "'F' is torch.nn.functional in the generated code"),
    (LAYERS_USE.replace("name: layers,", "name: OrderedDict,"), "'OrderedDict' is collections.OrderedDict"),
    (LAYERS_USE.replace("body:", "ordered_dict:").replace("module: body", "module: ordered_dict"),
     "clashes with 'OrderedDict'"),
], ids=["spec-shadows-a-package", "layer-hides-an-import", "layer-hides-ordereddict", "class-shadows-ordereddict"])
def test_names_that_break_the_generated_code_are_still_refused(write_spec, text, message):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(text))
    assert any(message in p.message for p in caught.value.problems), caught.value.format()


def test_a_param_that_is_the_input_width_is_not_passed_twice(write_spec):
    """MobileNetV2's `inp` is the channels each block receives: the class takes it once, as
    torchvision's InvertedResidual(inp, oup, ...) does, not as both in_channels and inp."""
    from netspec.codegen.backend import get_backend

    source = get_backend("torch").emit(check_file(ROOT / "specs" / "zoo" / "mobilenet_v2.yaml"))
    assert "    def __init__(self, inp: int, out: int, t: int = 6, stride: int = 1) -> None:" in source
    assert "self.conv = Branch(in_channels=inp, hidden=inp * t, out=out, stride=stride, expand=t != 1)" in source
    assert "InvertedResidual(inp=16, out=24, stride=2)," in source and "in_channels=16, inp=16" not in source
    # a module used once, whose param merely equals its input's width, keeps in_channels
    once = LAYERS_USE.replace("sequential: true", "sequential: true\n        params: {width: null}").replace(
        "out_channels: 4", 'out_channels: "${width}"').replace("module: body}", "module: body, params: {width: 3}}")
    assert "self.layers = Body(in_channels=3, width=3)" in get_backend("torch").emit(check_file(write_spec(once)))


@pytest.mark.torch
def test_a_module_may_name_its_one_input(write_spec):
    """`inputs: [x_in]` names the single input: its layers take `x_in`, the class's forward() too."""
    import torch

    from netspec.codegen.backend import get_backend

    spec = write_spec("""
        name: one-named
        input: [3, 8, 8]
        modules:
          blk:
            inputs: [x_in]
            layers:
              - {name: conv, type: conv2d, out_channels: 3, kernel_size: 3, padding: 1, inputs: x_in}
              - {name: add, type: add, inputs: [conv, x_in]}
        layers:
          - {name: u1, module: blk}
          - {name: u2, module: blk}
    """)
    net = check_file(spec)
    assert net.layer("u2.add").inputs == ("u2.conv", "u1.add")
    backend = get_backend("torch")
    assert "def forward(self, x_in: torch.Tensor) -> torch.Tensor:" in backend.emit(net)
    assert tuple(backend.load(net)(torch.randn(2, 3, 8, 8)).shape) == (2, 3, 8, 8)


FLAG_PER_USE = """
    name: flags
    input: [3, 8, 8]
    modules:
      unit:
        params: {width: 4, with_bias: true}
        layers:
          - {name: conv, type: conv2d, out_channels: "${width}", kernel_size: 3, padding: 1, bias: "${with_bias}"}
          - {name: bn, type: batchnorm2d}
    layers:
      - {name: a, module: unit, params: {width: 4}}
      - {name: b, module: unit, params: {width: 6, with_bias: false}}
      - {name: c, module: unit, params: {width: 8}}
      - {type: global_avgpool2d}
"""


@pytest.mark.torch
def test_uses_that_differ_in_a_flag_get_a_class_each_and_numbers_stay_arguments(write_spec):
    """A layer's macro writes ``bias=False`` only when it is off, so a flag that differs between
    uses cannot be an argument: the uses with bias and the use without get a class each, while the
    width that differs between the first and the third stays an argument of theirs."""
    import torch

    from netspec.codegen.backend import get_backend

    from .torch_helpers import per_layer

    net = check_file(write_spec(FLAG_PER_USE))
    backend = get_backend("torch")
    source = backend.emit(net)
    assert "class Unit(nn.Module)" in source and "class Unit2(nn.Module)" in source
    assert "nn.Conv2d(in_channels, width, kernel_size=3, padding=1)\n" in source  # a and c: width an argument
    assert "nn.Conv2d(in_channels, width, kernel_size=3, padding=1, bias=False)" in source  # b
    assert "self.b = Unit2(in_channels=4, width=6)" in source and "self.c = Unit(in_channels=6, width=8)" in source
    model = backend.load(net)
    measured, _ = per_layer(backend, net, model, torch.randn(2, *net.input_shape))
    assert measured == [(cl.output_shape, cl.params, cl.non_trainable) for cl in net.layers]
    assert model.b.conv.bias is None and model.a.conv.bias is not None


LEFT_OUT_AT_THE_TOP = """
    name: leftout
    input: [3, 8, 8]
    params: {extra: false}
    modules:
      unit:
        params: {width: 4}
        layers:
          - {name: conv, type: conv2d, out_channels: "${width}", kernel_size: 3, padding: 1}
    layers:
      - {name: a, module: unit}
      - {name: skip, type: conv2d, out_channels: 4, kernel_size: 1, when: "${extra}"}
      - {name: b, module: unit, when: "${extra}"}
      - {type: global_avgpool2d}
"""


@pytest.mark.torch
@pytest.mark.parametrize("extra", ["false", "true"])
def test_the_network_class_holds_the_spec_s_own_items_that_are_present(write_spec, extra):
    """The network class is built from the expansion's record of the spec's own items; a layer
    left out at the top of a spec with modules used to crash the torch export (KeyError)."""
    import torch

    from netspec.codegen.backend import get_backend

    net = check_file(write_spec(LEFT_OUT_AT_THE_TOP.replace("extra: false", f"extra: {extra}")))
    source = get_backend("torch").emit(net)
    assert ("self.skip = nn.Conv2d(" in source) == (extra == "true")
    assert ("self.b = Unit(" in source) == (extra == "true")
    model = get_backend("torch").load(net)
    assert sum(p.numel() for p in model.parameters()) == net.totals.params
    assert tuple(model(torch.randn(2, 3, 8, 8)).shape) == (2, 4)


@pytest.mark.parametrize(("header", "named_by"), [("name: mine\nclass_name: MyNet", "class_name: MyNet"),
                                                  ("name: my-net", "from the spec's name, 'my-net'")])
def test_a_module_named_as_the_network_class_is_refused_at_its_name(write_spec, header, named_by):
    """The torch source would need two classes named MyNet: renaming either silently would surprise."""
    from netspec.codegen.backend import get_backend

    spec = header + """
input: [3, 8, 8]
modules:
  my_net:
    layers:
      - {name: conv, type: conv2d, out_channels: 4, kernel_size: 3}
layers:
  - {name: a, module: my_net}
  - {type: global_avgpool2d}
"""
    net = check_file(write_spec(spec))
    with pytest.raises(SpecError) as caught:
        get_backend("torch").emit(net)
    [problem] = caught.value.problems
    assert problem.message == f"module 'my_net' would be the class MyNet, which is the network's own class ({named_by})"
    assert (problem.location.line, problem.hint) == (spec.splitlines().index("  my_net:") + 1,
                                                     "rename the module, e.g. 'my_net_block'")
    get_backend("torch").emit(check_file(write_spec(spec.replace("my_net", "unit"))))  # any other name is fine


RAMP = """
    name: ramp
    input: [4, 8, 8]
    params: {top: 0.3}
    modules:
      block:
        params: {number: null}
        layers:
          - {name: conv, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}
          - {name: drop, type: stochastic_depth, p: "${top * number / 5}"}
          - {name: add, type: add, inputs: [drop, input]}
      stage:
        sequential: true
        params: {depth: null, start: 0}
        layers:
          - {module: block, repeat: "${depth}", params: {number: "${start + repetition}"}, inline: true}
    layers:
      - {name: first, module: stage, params: {depth: 2}}
      - {name: second, module: block, repeat: 4, params: {number: "${2 + repetition}"}, first: {number: 0}}
"""


def test_a_repeated_uses_params_may_be_written_from_its_repetition_number(write_spec):
    """Stochastic depth that grows block by block (ConvNeXt's 0.1 * k / 17): `repetition` is the
    number of each repetition, from 0, in the scope the use is written in; `first:` still wins."""
    net = check_file(write_spec(RAMP))
    rates = {cl.name: cl.layer.p for cl in net.layers if cl.type == "stochastic_depth"}
    assert rates == pytest.approx({"first.0.drop": 0.0, "first.1.drop": 0.06, "second.0.drop": 0.0,
                                   "second.1.drop": 0.18, "second.2.drop": 0.24, "second.3.drop": 0.3})
    # the generated class writes each child's number from the stage's argument, not one shared value
    source = get_backend_source(net)
    assert "Block(in_channels=in_channels, number=start)," in source
    assert "Block(in_channels=in_channels, number=start + 1)," in source


def get_backend_source(net) -> str:
    from netspec.codegen.backend import get_backend

    return get_backend("torch").emit(net)


def test_repetition_outside_a_repeated_uses_params_is_a_located_error(write_spec):
    spec = write_spec(RAMP.replace('p: "${top * number / 5}"', 'p: "${top * repetition / 5}"'))
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    problem = caught.value.problems[0]
    assert "undefined param '${repetition}'" in problem.message and problem.location.line == 9
    assert "in the params of a use with 'repeat'" in problem.hint


def test_two_layers_of_one_name_in_a_module_are_refused_even_as_alternatives(write_spec):
    """The generated class holds each layer as an attribute of its name: the second `conv` would
    replace the first in every use (it did: `self.conv = ... if fused else None` twice)."""
    spec = write_spec("""
        name: dup
        input: [3, 8, 8]
        modules:
          block:
            params: {fused: false}
            layers:
              - {name: conv, type: conv2d, out_channels: 4, kernel_size: 1, when: "${fused}"}
              - {name: conv, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1, when: "${not fused}"}
        layers:
          - {name: a, module: block}
          - {name: b, module: block, params: {fused: true}}
        """)
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    [problem] = caught.value.problems
    assert problem.message == "module 'block' has two layers named 'conv'" and problem.location.line == 8


def test_a_runs_resolved_spec_keeps_params_written_from_repetition(write_spec, tmp_path):
    """`netspec train` writes the spec as trained (modules unexpanded); a top-level use's param
    written from `repetition` is written back as it was (it crashed the YAML writer)."""
    from netspec.train.launch import _resolved_spec_text

    net = check_file(write_spec(RAMP))
    text = _resolved_spec_text(net)
    assert 'number: ${2 + repetition}' in text
    again = check_file(write_spec(text, "resolved.yaml"))
    assert [(cl.name, cl.layer) for cl in again.layers] == [(cl.name, cl.layer) for cl in net.layers]

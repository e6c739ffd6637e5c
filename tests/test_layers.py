"""The layer catalogue: every entry is registered, documented, and its shape rule and parameter
count agree with what PyTorch really does, for each of its examples."""

from __future__ import annotations

import math

import pytest

from netspec.analysis.checker import check
from netspec.language.loader import LoadedSpec
from netspec.language.spec import NetSpec, SpecSource
from netspec.layers import LAYER_REGISTRY, LayerInput, ShapeIssue
from netspec.layers.base import (
    IDS,
    channels_of,
    features_last,
    is_tokens,
    layout_of,
    partition_of,
    same_padding,
    window_output,
)

CATALOGUE = [(kind, i) for kind, cls in sorted(LAYER_REGISTRY.items()) for i in range(len(cls.examples))]


def single_layer_net(kind: str, index: int):
    """A network around catalogue example ``index`` of ``kind``, checked: the layer alone, or for
    a merge, whose example gives one shape per input, fed by one small layer per input that makes
    that shape of the network input (the first one)."""
    shape, config = LAYER_REGISTRY[kind].examples[index]
    if not isinstance(shape[0], tuple):
        layers = [{"name": "layer", "type": kind, **config}]
        # a partitioned image: the input, partitioned; a channels-last image: the input, permuted
        if partition_of(shape):
            rows, cols, tokens, features = shape
            size = math.isqrt(tokens)
            layers.insert(0, {"name": "grouped", "type": "partition", "by": partition_of(shape), "size": size})
            shape = (features, rows * size, cols * size)
        elif features_last(shape) and not is_tokens(shape) and layout_of(shape) is not IDS:
            rank = len(shape) - 1
            layers.insert(0, {"name": "to_last", "type": "permute", "dims": [0, *range(2, rank + 2), 1]})
            shape = (shape[-1], *shape[:-1])
        spec = NetSpec.model_validate({"name": "one", "input": _input(shape), "layers": layers})
        return check(SpecSource(spec, LoadedSpec({}, {}, "<example>")))
    network_input, feeders = shape[0], []
    for i, wanted in enumerate(shape):
        feeders += _feeder(f"in{i}", network_input, wanted)
    layers = [*feeders, {"name": "layer", "type": kind, "inputs": [f"in{i}" for i in range(len(shape))], **config}]
    spec = NetSpec.model_validate({"name": "one", "input": _input(network_input), "layers": layers})
    return check(SpecSource(spec, LoadedSpec({}, {}, "<example>")))


def _input(shape: tuple) -> dict:
    layout = "ids" if layout_of(shape) is IDS else "tokens" if is_tokens(shape) else "channels_first"
    return {"shape": list(shape), "layout": layout}


def _feeder(name: str, network_input: tuple, wanted: tuple) -> list[dict]:
    """Layers that turn the network input into ``wanted``, ending in one named ``name``: a 1×1
    convolution (or a linear layer) with its own weights, so that the merge's inputs differ."""
    if len(wanted) == 1 or is_tokens(wanted):  # a linear layer: on flat features, or on every token
        return [{"name": name, "type": "linear", "out_features": wanted[-1], "inputs": "input"}]
    if wanted[1:] == (1, 1) and network_input[1:] != (1, 1):
        return [{"name": f"{name}_pool", "type": "global_avgpool2d", "keepdims": True, "inputs": "input"},
                {"name": name, "type": "conv2d", "out_channels": wanted[0], "kernel_size": 1,
                 "activation": "sigmoid"}]
    assert wanted[1:] == network_input[1:], "a merge example's image inputs share the network input's size"
    return [{"name": name, "type": "conv2d", "out_channels": wanted[0], "kernel_size": 1, "inputs": "input"}]


@pytest.mark.parametrize("kind", sorted(LAYER_REGISTRY))
def test_every_layer_is_documented_with_examples(kind):
    cls = LAYER_REGISTRY[kind]
    assert cls.__doc__ and len(cls.__doc__.strip()) > 20
    assert cls.examples, f"{kind} needs at least one example in its catalogue entry"
    assert cls.category != "misc"


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 11, 4, (3, 4)),  # out 56: total pad 7, extra pixel after
        (27, 5, 1, (2, 2)),
        (13, 3, 2, (1, 1)),
        (10, 4, 3, (1, 2)),
        (8, 1, 2, (0, 0)),
        (7, 2, 2, (0, 1)),
    ],
)
def test_same_padding_follows_tensorflow(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    top, bottom = expected
    assert window_output(size, kernel, stride, top, bottom) == -(-size // stride)


def test_ceil_mode_drops_a_window_that_starts_in_the_padding():
    # PyTorch: 5 inputs, kernel 2, stride 2, padding 1, ceil -> 3 (a 4th window would start in the right pad)
    assert window_output(5, 2, 2, 1, 1, ceil_mode=True) == 3
    assert window_output(6, 3, 2, 0, 0, ceil_mode=True) == 3
    assert window_output(6, 3, 2, 0, 0, ceil_mode=False) == 2


def test_grouped_conv_counts_params_and_macs_per_group():
    conv = LAYER_REGISTRY["conv2d"].model_validate(
        {"name": "c", "type": "conv2d", "out_channels": 384, "kernel_size": 3, "padding": 1, "groups": 2})
    analysis = conv.analyze(LayerInput((384, 13, 13), "the input"))
    assert analysis.params == 384 * 192 * 9 + 384
    assert analysis.macs == 13 * 13 * 384 * 192 * 9


def test_in_channels_mismatch_is_reported_but_not_fatal():
    conv = LAYER_REGISTRY["conv2d"].model_validate(
        {"name": "c", "type": "conv2d", "out_channels": 8, "kernel_size": 3, "in_channels": 4})
    analysis = conv.analyze(LayerInput((3, 8, 8), "layer 'x' (line 3)"))
    [issue] = analysis.issues
    assert issue.message == "in_channels is 4 but layer 'x' (line 3) yields 3 channels"
    assert not issue.fatal and analysis.output == (8, 6, 6)


def test_spatial_layer_after_flatten_is_explained():
    pool = LAYER_REGISTRY["maxpool2d"].model_validate({"name": "p", "type": "maxpool2d", "kernel_size": 2})
    with pytest.raises(ShapeIssue, match="needs an image-shaped input"):
        pool.analyze(LayerInput((100,), "layer 'flat' (line 9)"))


def test_pool_padding_over_half_the_kernel_is_refused():
    pool = LAYER_REGISTRY["maxpool2d"].model_validate(
        {"name": "p", "type": "maxpool2d", "kernel_size": 3, "padding": 2})
    with pytest.raises(ShapeIssue, match="more than half the kernel"):
        pool.analyze(LayerInput((4, 9, 9), "the input"))


def test_readme_catalogue_lists_every_layer_type():
    from .conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Layer catalogue"):readme.index("## The AlexNet family")]
    missing = [kind for kind in LAYER_REGISTRY if f"`{kind}`" not in table]
    assert not missing, f"README's layer catalogue lacks {missing}"


def test_what_the_rest_of_netspec_asks_of_a_layer_is_on_its_class(write_spec):
    """Type-name synonyms, the loss's choice and the fast path's switches read class attributes, so
    a new layer type says them where it is defined (no list of type names elsewhere)."""
    from netspec import check_file
    from netspec.errors import SpecError
    from netspec.layers import LAYER_REGISTRY
    from netspec.train.loop import outputs_probabilities

    synonyms = [s for cls in LAYER_REGISTRY.values() for s in cls.type_synonyms]
    assert len(synonyms) == len(set(synonyms)) and not set(synonyms) & set(LAYER_REGISTRY)
    assert [k for k, cls in LAYER_REGISTRY.items() if cls.outputs_probabilities] == ["softmax"]
    assert sorted(k for k, cls in LAYER_REGISTRY.items() if cls.batch_statistics) == ["batchnorm1d", "batchnorm2d",
                                                                                            "batchnorm3d"]
    assert [k for k, cls in LAYER_REGISTRY.items() if cls.random_in_training] == ["dropout", "stochastic_depth"]
    assert [k for k, cls in LAYER_REGISTRY.items() if cls.flattens] == ["flatten"]
    spec = "name: s\ninput: [4]\nlayers: [{name: fc, type: linear, out_features: 3, activation: softmax}]\n"
    assert outputs_probabilities(check_file(write_spec(spec)))
    assert not outputs_probabilities(check_file(write_spec(spec.replace("softmax", "sigmoid"))))
    assert outputs_probabilities(check_file(write_spec(spec.replace(", activation: softmax}", "}, {type: softmax}"))))
    with pytest.raises(SpecError) as caught:
        check_file(write_spec(spec.replace("type: linear", "type: swish")))
    assert caught.value.problems[0].hint == "did you mean 'silu'?"


def test_layers_take_the_rank_they_are_written_for():
    """A 2-D layer given a sequence, and a 1-D layer given an image, are refused with what they got
    and which layers take it; every shape rule is the same code for each rank."""
    conv2d = LAYER_REGISTRY["conv2d"].model_validate({"name": "c", "type": "conv2d", "out_channels": 4,
                                                      "kernel_size": 3})
    with pytest.raises(ShapeIssue, match=r"conv2d needs an image-shaped input \(channels×height×width\) but the "
                                         r"input is a sequence \(C×L 3×224\)") as caught:
        conv2d.analyze(LayerInput((3, 224), "the input"))
    assert "conv1d" in caught.value.hint
    pool1d = LAYER_REGISTRY["maxpool1d"].model_validate({"name": "p", "type": "maxpool1d", "kernel_size": 2})
    with pytest.raises(ShapeIssue, match=r"maxpool1d needs a sequence-shaped input \(channels×length\) but layer "
                                         r"'c' \(line 3\) yields an image \(C×H×W 4×8×8\)") as caught:
        pool1d.analyze(LayerInput((4, 8, 8), "layer 'c' (line 3)"))
    assert "maxpool2d" in caught.value.hint
    # batchnorm1d takes a sequence or flat features, as nn.BatchNorm1d does
    norm = LAYER_REGISTRY["batchnorm1d"].model_validate({"name": "b", "type": "batchnorm1d"})
    assert norm.analyze(LayerInput((6, 10), "the input")).resolved == {"num_features": 6}
    assert norm.analyze(LayerInput((12,), "the input")).params == 24
    with pytest.raises(ShapeIssue, match="batchnorm1d needs a sequence-shaped input"):
        norm.analyze(LayerInput((4, 8, 8), "the input"))


def test_one_dimensional_sizes_are_validated_per_axis():
    conv = LAYER_REGISTRY["conv1d"]
    assert conv.model_validate({"name": "c", "type": "conv1d", "out_channels": 2, "kernel_size": [5]}).kernel_size \
        == (5,)
    with pytest.raises(ValueError, match=r"expected one integer or \[length\], got 2 values"):
        conv.model_validate({"name": "c", "type": "conv1d", "out_channels": 2, "kernel_size": [3, 3]})
    with pytest.raises(ValueError, match="expected one integer or a pair"):
        LAYER_REGISTRY["conv2d"].model_validate({"name": "c", "type": "conv2d", "out_channels": 2,
                                                 "kernel_size": [3]})


def test_conv1d_counts_params_macs_and_receptive_field():
    net = check(SpecSource(NetSpec.model_validate({"name": "seq", "input": {"shape": [100, 8],
                                                                             "layout": "channels_last"}, "layers": [
        {"name": "c1", "type": "conv1d", "out_channels": 16, "kernel_size": 5, "stride": 2, "groups": 2},
        {"name": "c2", "type": "conv1d", "out_channels": 4, "kernel_size": 3, "dilation": 2, "padding": "same"},
    ]}), LoadedSpec({}, {}, "<test>")))
    assert net.input_shape == (8, 100)  # [L, C] channels-last is C×L
    c1, c2 = net.layers
    assert c1.output_shape == (16, 48) and c1.params == 16 * 4 * 5 + 16 and c1.macs == 48 * 16 * 4 * 5
    assert c2.resolved["padding"] == (2, 2) and c2.output_shape == (4, 48)
    assert c1.receptive_field == (5,) and c2.receptive_field == (5 + 2 * 2 * 2,)


@pytest.mark.parametrize(("kind", "index"), CATALOGUE)
def test_the_channels_a_layer_says_it_receives_are_its_inputs_channels(kind, index):
    """``input_channel_keys`` names the resolved values that generated module classes write as the
    channels coming in: each must be resolved, and equal to those channels, in every example."""
    net = single_layer_net(kind, index)
    layer = net.layer("layer")
    for key in layer.layer.input_channel_keys:
        assert layer.resolved[key] == channels_of(layer.input_shapes[0]), (kind, key)
    declaring = sorted(k for k, cls in LAYER_REGISTRY.items() if cls.input_channel_keys)
    assert declaring == ["batchnorm1d", "batchnorm2d", "batchnorm3d", "class_token", "conv1d", "conv2d", "conv3d",
                         "conv_transpose2d", "groupnorm", "gru", "layer_scale", "layernorm", "linear", "lstm",
                         "multihead_attention", "position_embedding", "relative_attention", "window_attention"]


def test_a_weight_tensor_can_reshape_as_well_as_permute():
    """A multi-head projection: PyTorch stores the query weight as (heads·head_dim, D), Keras'
    MultiHeadAttention as (D, heads, head_dim). Keras' [d, h, k] must be PyTorch's [h·head_dim + k, d]."""
    import numpy as np

    from netspec.layers.base import WeightTensor

    heads, head_dim, width = 3, 4, 5
    query = WeightTensor("q_proj_weight", "query/kernel", to_keras=(1, 0),
                         reshape=((heads * head_dim, width), (width, heads, head_dim)))
    torch_value = np.arange(heads * head_dim * width, dtype=np.float32).reshape(heads * head_dim, width)
    keras_value = query.keras_array(torch_value)
    assert keras_value.shape == (width, heads, head_dim)
    assert all(keras_value[d, h, k] == torch_value[h * head_dim + k, d]
               for d in range(width) for h in range(heads) for k in range(head_dim))
    assert np.array_equal(query.torch_array(keras_value), torch_value)
    # a mutant that only reshapes, without the permutation, puts the values on the wrong axes
    unpermuted = WeightTensor("q_proj_weight", "query/kernel", reshape=((heads * head_dim, width),
                                                                        (width, heads, head_dim)))
    assert unpermuted.keras_array(torch_value).shape == keras_value.shape
    assert not np.array_equal(unpermuted.keras_array(torch_value), keras_value)
    with pytest.raises(ValueError, match="cannot be reshaped"):
        WeightTensor("w", "kernel", reshape=((6, 5), (4, 8)))


TOKENS_SPEC = """
name: tokens
input: {shape: [16, 32], layout: tokens}
layers:
  - {name: mix, type: linear, out_features: 8}
  - {name: seq, type: LAYER}
"""


@pytest.mark.parametrize(("kind", "extra"), [("conv1d", ", out_channels: 4, kernel_size: 3"), ("batchnorm1d", ""),
                                             ("global_avgpool1d", ""), ("maxpool1d", ", kernel_size: 2")])
def test_a_token_sequence_is_not_read_as_channels_first(write_spec, kind, extra):
    """(16, 32) as tokens is 16 positions of 32 features; as a sequence (C×L) it would be 16
    channels of length 32. The layout, not the rank, decides: layers that take channels first
    refuse tokens, at their line, and take the same sizes written as a sequence."""
    from netspec import check_file
    from netspec.errors import SpecError

    text = TOKENS_SPEC.replace("type: LAYER", f"type: {kind}{extra}")
    with pytest.raises(SpecError) as caught:
        check_file(write_spec(text))
    [problem] = caught.value.problems
    assert problem.layer == "seq" and problem.location.line == 5
    assert "a sequence (channels first, C×L)" in problem.message and "a token sequence (L×D 16×8)" in problem.message
    as_sequence = text.replace(", layout: tokens", "").replace("  - {name: mix, type: linear, out_features: 8}\n", "")
    assert check_file(write_spec(as_sequence)).layer("seq").input_shape == (16, 32)  # 16 channels of length 32


def test_per_token_layers_keep_the_layout_and_count_every_position(write_spec):
    from netspec import check_file
    from netspec.layers.base import TOKENS, channels_last, layout_of

    net = check_file(write_spec(TOKENS_SPEC.replace("type: LAYER", "type: gelu")))
    mix, act = net.layer("mix"), net.layer("seq")
    assert layout_of(mix.output_shape) is TOKENS and layout_of(act.output_shape) is TOKENS
    assert mix.output_shape == (16, 8) and mix.macs == 16 * 32 * 8 and mix.params == 32 * 8 + 8
    assert channels_last(mix.output_shape) == (16, 8)  # Keras holds tokens as they are
    assert channels_last((16, 8)) == (8, 16)  # and a channels-first sequence with its channels last
    assert layout_of(check_file(write_spec(TOKENS_SPEC.replace("type: LAYER", "type: gelu")),
                                input_shape=(4, 32)).input_shape) is TOKENS  # --input keeps the layout


def test_a_layer_of_another_rank_names_the_layers_of_the_input_s_rank(write_spec):
    """The hint lists the catalogue's layers of that rank, from their classes: a new rank's layers
    are named without a list to update."""
    from netspec import check_file
    from netspec.errors import SpecError

    for shape, named in (("[2, 8, 16, 16]", "conv3d, batchnorm3d, maxpool3d, avgpool3d, global_avgpool3d"),
                         ("[2, 16]", "conv1d, batchnorm1d, maxpool1d, avgpool1d, global_avgpool1d")):
        with pytest.raises(SpecError) as caught:
            check_file(write_spec(f"name: v\ninput: {shape}\nlayers: [{{name: c, type: conv2d, out_channels: 2, "
                                  f"kernel_size: 3}}]\n"))
        assert caught.value.problems[0].hint.endswith(f"are {named}")


def test_groupnorm_refuses_groups_that_do_not_divide_the_channels_and_token_sequences(write_spec):
    from netspec import check_file
    from netspec.errors import SpecError

    for text, message in (("input: [6, 4, 4]\nlayers: [{name: g, type: groupnorm, num_groups: 4}]",
                           "num_groups=4 does not divide the 6 channels"),
                          ("input: {shape: [5, 8], layout: tokens}\n"
                           "layers: [{name: g, type: groupnorm, num_groups: 2}]",
                           "groupnorm normalizes channels-first tensors")):
        with pytest.raises(SpecError) as caught:
            check_file(write_spec(f"name: g\n{text}\n"))
        [problem] = caught.value.problems
        assert message in problem.message and problem.layer == "g" and problem.location.line == 3
    assert check_file(write_spec("name: g\ninput: [6, 4, 4]\nlayers: [{name: g, type: groupnorm, num_groups: 3}]\n")
                      ).layer("g").params == 12


def _checked(layers: list[dict], input_shape=(6, 4, 5)):
    spec = NetSpec.model_validate({"name": "one", "input": list(input_shape), "layers": layers})
    return check(SpecSource(spec, LoadedSpec({}, {}, "<example>")))


def test_channels_moved_last_take_per_pixel_layers_and_give_their_layout_on():
    """ConvNeXt's block: permute to H×W×C, layernorm and linear at each pixel, permute back."""
    net = _checked([{"name": "last", "type": "permute", "dims": [0, 2, 3, 1]},
                    {"name": "norm", "type": "layernorm"},
                    {"name": "fc", "type": "linear", "out_features": 8},
                    {"name": "act", "type": "gelu"},
                    {"name": "first", "type": "permute", "dims": [0, 3, 1, 2]},
                    {"name": "conv", "type": "conv2d", "out_channels": 2, "kernel_size": 1}])
    shapes = {cl.name: (cl.output_shape, layout_of(cl.output_shape).name) for cl in net.layers}
    assert shapes == {"last": ((4, 5, 6), "H×W×C"), "norm": ((4, 5, 6), "H×W×C"), "fc": ((4, 5, 8), "H×W×C"),
                      "act": ((4, 5, 8), "H×W×C"), "first": ((8, 4, 5), "C×H×W"), "conv": ((2, 4, 5), "C×H×W")}
    assert net.layer("fc").macs == 4 * 5 * 6 * 8 and net.layer("norm").resolved["over"] == "last"


@pytest.mark.parametrize(("layers", "message", "hint"), [
    ([{"name": "p", "type": "permute", "dims": [0, 2, 1, 3]}],
     "permute moves the channels between first and last", "dims: [0, 2, 3, 1] gives H×W×C"),
    ([{"name": "p", "type": "permute", "dims": [0, 2, 3, 1]}, {"name": "c", "type": "conv2d", "out_channels": 2,
                                                                "kernel_size": 1}],
     "conv2d needs an image (channels first, C×H×W) but layer 'p'", "{type: permute, dims: [0, 3, 1, 2]}"),
    ([{"name": "s", "type": "select"}], "select picks one token of a token sequence", "to_tokens"),
    ([{"name": "t", "type": "to_tokens"}, {"name": "s", "type": "select", "index": 20}],
     "index 20 is outside the 20 tokens", "an index from -20 to 19"),
    ([{"name": "t", "type": "to_tokens"}, {"name": "a", "type": "multihead_attention", "num_heads": 4}],
     "num_heads=4 does not divide the 6 features", "one of 1, 2, 3, 6"),
    ([{"name": "a", "type": "multihead_attention", "num_heads": 2}],
     "multihead_attention attends over a token sequence (L×D)", "{type: to_tokens}"),
    ([{"name": "c", "type": "chunk", "chunks": 4}], "chunks=4 does not divide the 6 channels", "divide the channels"),
    ([{"name": "c", "type": "chunk", "chunks": 3, "index": 3}], "index 3 is not one of the 3 chunks",
     "an index from 0 to 2"),
    ([{"name": "p", "type": "partition", "by": "grid", "size": 3}],
     "size 3 does not divide the sides of the 4×5 image from the input", "a size that divides both (1)"),
    ([{"name": "a", "type": "relative_attention", "num_heads": 2}],
     "relative_attention attends within the groups of an image partitioned", "{type: partition, by: window"),
    ([{"name": "d", "type": "departition"}], "departition puts back in place the pixels of an image partitioned",
     "partition a channels-first image first"),
    ([{"name": "p", "type": "partition", "by": "window", "size": 1},
      {"name": "c", "type": "conv2d", "out_channels": 2, "kernel_size": 1}],
     "conv2d needs an image (channels first, C×H×W) but layer 'p'", "{type: departition}"),
    ([{"name": "p", "type": "partition", "by": "window", "size": 1},
      {"name": "q", "type": "permute", "dims": [0, 2, 1]}],
     "an image's pixels grouped by window", "{type: departition}"),
    ([{"name": "p", "type": "partition", "by": "window", "size": 1},
      {"name": "a", "type": "relative_attention", "num_heads": 4}], "num_heads=4 does not divide the 6 features",
     "one of 1, 2, 3, 6"),
])
def test_layout_mistakes_name_the_layout_and_the_fix(layers, message, hint):
    from netspec.errors import SpecError

    with pytest.raises(SpecError) as caught:
        _checked(layers)
    problem = caught.value.problems[0]
    assert message in problem.message and hint in problem.hint, problem


def test_attention_counts_its_maps_in_macs_and_memory():
    """ViT-B/16's figures per block: 4·L·D² + 2·L²·D MACs, heads·L² attention weights kept."""
    net = _checked([{"name": "t", "type": "to_tokens"},
                    {"name": "a", "type": "multihead_attention", "num_heads": 12}], input_shape=(768, 14, 14))
    attention = net.layer("a")
    assert attention.output_shape == (196, 768) and attention.params == 4 * 768 * 768 + 4 * 768
    assert attention.macs == 4 * 196 * 768**2 + 2 * 196**2 * 768
    assert attention.activation_elements == 196 * 768 + 12 * 196 * 196


@pytest.mark.parametrize("kind", ["layer_scale", "multihead_attention", "chunk"])
def test_a_sequential_module_or_block_refuses_what_it_cannot_apply_as_a_module(kind, write_spec):
    """`check` says it, at the layer's line, before any backend is asked: a green check means the
    torch export works (it used to fail only there, as an nn.Sequential cannot hold a parameter)."""
    from netspec import check_file
    from netspec.errors import SpecError

    fields = {"layer_scale": "", "multihead_attention": ", num_heads: 2", "chunk": ", chunks: 2"}[kind]
    body = [f"      - {{type: {kind}{fields}}}"]
    module = write_spec("\n".join(["name: seq", "input: {shape: [4, 8], layout: tokens}", "modules:", "  m:",
                                   "    sequential: true", "    layers:", "      - {type: linear, out_features: 8}",
                                   *body, "layers:", "  - {name: use, module: m}", ""]), "module.yaml")
    block = write_spec("\n".join(["name: seq", "input: {shape: [4, 8], layout: tokens}", "blocks:",
                                  "  - name: b", "    layers:", "      - {name: fc, type: linear, out_features: 8}",
                                  f"      - {{name: step, type: {kind}{fields}}}", ""]), "block.yaml")
    for spec, line in ((module, 8), (block, 7)):
        with pytest.raises(SpecError) as caught:
            check_file(spec)
        [problem] = caught.value.problems
        assert f"and {kind} is" in problem.message and problem.location.line == line, problem


def test_receptive_fields_through_upsampling_windows_and_recurrence(write_spec):
    """Upsampling divides the step between output pixels (a 3×3 conv after a 2× upsampling adds 2
    input pixels, not 4); a window of attention and a 2×2 merge grow the field; a recurrent layer's
    step reads every earlier token."""
    from netspec import check_file

    net = check_file(write_spec("""
        name: rf
        input: [2, 16, 16]
        layers:
          - {name: c1, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}
          - {name: pool, type: maxpool2d, kernel_size: 2}
          - {name: c2, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}
          - {name: up, type: conv_transpose2d, out_channels: 4, kernel_size: 2, stride: 2}
          - {name: c3, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}
          - {name: bilinear, type: upsample, scale_factor: 2, mode: bilinear}
          - {name: c4, type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}
          - {name: last, type: permute, dims: [0, 2, 3, 1]}
          - {name: attend, type: window_attention, num_heads: 2, window_size: 4}
          - {name: merge, type: patch_merge}
    """))
    fields = {cl.name: cl.receptive_field for cl in net.layers}
    assert fields["c2"] == (8, 8)  # 3, then 4 after the pool (jump 2), then 4 + 2·2
    assert fields["up"] == (8, 8) and fields["c3"] == (10, 10)  # the jump back to 1 after the up-conv
    assert fields["bilinear"] == (11, 11)  # reads 2 pixels a side; the jump becomes 1/2
    assert fields["c4"] == (12, 12)  # 11 + 2·(1/2)
    assert fields["attend"] == (14, 14) and fields["merge"] == (14, 14)  # 12 + 3·(1/2) = 13.5, then + 1·(1/2)
    tokens = check_file(write_spec("""
        name: seq
        input: {shape: [12], layout: ids}
        layers:
          - {name: embed, type: embedding, num_embeddings: 20, embedding_dim: 4}
          - {name: rnn, type: gru, hidden_size: 4, return_sequences: true}
    """, "seq.yaml"))
    assert tokens.layer("rnn").receptive_field is None  # "all"


def test_adding_an_image_grouped_by_window_to_one_grouped_by_grid_names_the_layouts():
    from netspec.errors import SpecError

    spec = NetSpec.model_validate({"name": "mixed", "input": [4, 6, 6], "layers": [
        {"name": "w", "type": "partition", "by": "window", "size": 3},
        {"name": "g", "type": "partition", "by": "grid", "size": 3, "inputs": "input"},
        {"name": "both", "type": "add", "inputs": ["w", "g"]},
    ]})
    with pytest.raises(SpecError) as caught:
        check(SpecSource(spec, LoadedSpec({}, {}, "<test>")))
    message = str(caught.value)
    assert "an image's pixels grouped by window (Gh×Gw×P×D)" in message
    assert "an image's pixels grouped by grid (Gh×Gw×P×D), the same sizes in another order" in message
    assert "departition" in message

"""The loader: variants (extends/patch/remove), ${params}, --set, and safe YAML."""

from __future__ import annotations

import textwrap

import pytest

from netspec import check_file, load_spec
from netspec.errors import SpecError
from netspec.loader import load_spec_document

BASE = """
    name: base
    input: [3, 32, 32]
    params: {classes: 10, width: 8}
    layers:
      - {name: conv1, type: conv2d, out_channels: "${width}", kernel_size: 3, padding: 1}
      - {name: norm1, type: batchnorm2d}
      - {type: relu}
      - {name: pool1, type: maxpool2d, kernel_size: 2}
      - {type: flatten}
      - {name: fc, type: linear, out_features: "${classes}"}
    training:
      epochs: 5
      optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
"""


def test_whole_string_param_keeps_its_type(write_spec):
    spec = load_spec(write_spec(BASE)).spec
    assert spec.layers[0].out_channels == 8
    assert spec.layers[-1].out_features == 10


def test_param_inside_text_and_escaped_dollar(write_spec):
    path = write_spec("""
        name: text
        description: "width ${width}, literally $${width}"
        input: [3, 8, 8]
        params: {width: 4}
        layers:
          - {type: flatten}
    """)
    assert load_spec(path).spec.description == "width 4, literally ${width}"


def test_params_can_refer_to_params(write_spec):
    path = write_spec("""
        name: chained
        input: [3, 8, 8]
        params: {base: 4, width: "${base}"}
        layers:
          - {name: conv, type: conv2d, out_channels: "${width}", kernel_size: 1}
    """)
    assert load_spec(path).spec.layers[0].out_channels == 4


def test_unnamed_layers_get_stable_names(write_spec):
    names = [layer.name for layer in load_spec(write_spec(BASE)).spec.layers]
    assert names == ["conv1", "norm1", "relu_1", "pool1", "flatten_1", "fc"]


def test_variant_merges_mappings_and_patches_layers(write_spec):
    write_spec(BASE, "base.yaml")
    variant = write_spec("""
        extends: base.yaml
        name: variant
        params: {classes: 100}
        training: {optimizer: {lr: 0.01}}
        patch:
          conv1: {kernel_size: 5, padding: null}
        remove: [norm1]
    """, "variant.yaml")
    source = load_spec(variant)
    spec = source.spec
    assert spec.name == "variant"
    assert [layer.name for layer in spec.layers] == ["conv1", "relu_1", "pool1", "flatten_1", "fc"]
    assert spec.layers[0].kernel_size == (5, 5)
    assert spec.layers[0].padding == (0, 0)  # null falls back to the default
    assert spec.layers[-1].out_features == 100
    assert spec.training.optimizer.lr == 0.01 and spec.training.optimizer.momentum == 0.9
    assert spec.training.epochs == 5
    # locations point into the file that wrote each value
    assert source.location(("layers", 0, "kernel_size")).file.endswith("variant.yaml")
    assert source.location(("layers", 0, "name")).file.endswith("base.yaml")
    assert source.loaded.chain[1].endswith("base.yaml")


def test_variant_errors_point_into_the_base_file(write_spec):
    write_spec(BASE, "base.yaml")
    variant = write_spec("""
        extends: base.yaml
        name: variant
        input: [3, 1, 1]
    """, "variant.yaml")
    with pytest.raises(SpecError) as caught:
        check_file(variant)
    [problem] = caught.value.problems
    assert problem.layer == "pool1"
    assert problem.location.file.endswith("base.yaml") and problem.location.line == 8


def test_patch_of_an_unknown_layer_suggests_one(write_spec):
    write_spec(BASE, "base.yaml")
    variant = write_spec("""
        extends: base.yaml
        name: variant
        patch: {conv: {kernel_size: 5}}
        remove: [norm2]
    """, "variant.yaml")
    with pytest.raises(SpecError) as caught:
        load_spec(variant)
    messages = sorted((p.message, p.hint) for p in caught.value.problems)
    assert messages == [
        ("'patch' names a layer the base does not have: 'conv'", "did you mean 'conv1'?"),
        ("'remove' names a layer the base does not have: 'norm2'", "did you mean 'norm1'?"),
    ]


def test_patch_without_extends_is_an_error(write_spec):
    path = write_spec(textwrap.dedent(BASE) + "patch: {conv1: {kernel_size: 5}}\n")
    with pytest.raises(SpecError, match="'patch:' only makes sense in a variant"):
        load_spec(path)


def test_variant_in_a_subfolder_may_extend_within_the_tree(write_spec):
    write_spec(BASE, "family/base.yaml")
    write_spec("extends: ../family/base.yaml\nname: v\n", "family/variants/v.yaml")
    # the spec tree is the folder of the spec named on the command line
    with pytest.raises(SpecError, match="outside the folder"):
        load_spec(write_spec("extends: ../base.yaml\nname: v\n", "family/variants/v.yaml"))
    write_spec("extends: ../base.yaml\nname: v\n", "family/sub/v.yaml")
    with pytest.raises(SpecError, match="outside the folder"):
        load_spec(write_spec("extends: ../base.yaml\nname: v\n", "family/sub/v.yaml"))


def test_set_overrides_params_and_dotted_fields(write_spec):
    path = write_spec(BASE)
    spec = load_spec(path, ["classes=3", "training.epochs=2", "training.optimizer.name=adam"]).spec
    assert spec.layers[-1].out_features == 3
    assert spec.training.epochs == 2 and spec.training.optimizer.name == "adam"


def test_bad_set_value_is_reported_where_the_param_is_used(write_spec):
    with pytest.raises(SpecError) as caught:
        check_file(write_spec(BASE), ["width=0"])
    [problem] = caught.value.problems
    assert (problem.location.line, problem.location.column) == (5, 33)
    assert problem.layer == "conv1" and "'out_channels' must be more than 0, got 0" in problem.message


def test_bad_set_field_is_located_at_the_option(write_spec):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(BASE), ["training.epochs=0"])
    [problem] = caught.value.problems
    assert problem.location.file == "--set training.epochs=0"


def test_set_unknown_param(write_spec):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(BASE), ["clases=3"])
    [problem] = caught.value.problems
    assert problem.message == "no param named 'clases'"
    assert problem.hint.startswith("did you mean 'classes'?")


def test_set_needs_key_value(write_spec):
    with pytest.raises(SpecError, match="--set needs KEY=VALUE"):
        load_spec(write_spec(BASE), ["classes"])


def test_merge_keys_are_refused(write_spec):
    path = write_spec("""
        name: merge
        input: [3, 8, 8]
        base: &base {type: relu}
        layers:
          - {<<: *base, name: act}
    """)
    with pytest.raises(SpecError, match="merge keys"):
        load_spec_document(path)


def test_plain_aliases_still_work(write_spec):
    path = write_spec("""
        name: alias
        input: [3, 8, 8]
        layers:
          - &act {type: relu, name: act1}
          - {type: flatten}
    """)
    assert load_spec(path).spec.layers[0].name == "act1"


def test_dates_stay_text(write_spec):
    path = write_spec("""
        name: dated
        description: 2012-12-03
        input: [3, 8, 8]
        layers: [{type: flatten}]
    """)
    assert load_spec(path).spec.description == "2012-12-03"


def test_strings_are_not_coerced_to_numbers(write_spec):
    path = write_spec("""
        name: strict
        input: [3, 8, 8]
        layers:
          - {name: c, type: conv2d, out_channels: "8", kernel_size: 3}
    """)
    with pytest.raises(SpecError, match="'out_channels' must be an integer, got '8'"):
        load_spec(path)

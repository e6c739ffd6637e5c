"""The loader: variants (extends/patch/remove), ${params}, --set, and safe YAML."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from netspec.analysis.checker import check_file
from netspec.errors import SpecError
from netspec.language.loader import load_spec_document
from netspec.language.spec import load_spec  # the command line's path: overrides are --set strings

from .conftest import lines_executed

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


# --- ${param} expansion is bounded ---------------------------------------------------------------------

def test_nested_param_references_cannot_blow_up(write_spec):
    """13 params each holding ten references to the next would expand to ~10**13 characters."""
    params = "\n".join(f'  p{i}: "{f"${{p{i + 1}}}" * 10}"' for i in range(13))
    path = write_spec("name: bomb\ninput: [3, 8, 8]\nparams:\n" + params + '\n  p13: "xx"\n'
                      'description: "${p0}"\nlayers: [{type: flatten}]\n')
    assert path.stat().st_size < 1000
    with pytest.raises(SpecError) as caught:
        load_spec_document(path)
    [problem] = caught.value.problems
    assert "expands to more than" in problem.message and "characters" in problem.message
    assert problem.location.line > 3 and problem.location.column > 0
    assert "param '" in problem.message


def test_many_references_to_a_long_param_are_bounded(write_spec):
    """Each string stays under the limit for one, but together they would be gigabytes."""
    uses = "\n".join(f'  k{i}: "x${{long}}"' for i in range(40))
    path = write_spec(f"name: many\ninput: [3, 8, 8]\nparams:\n  long: \"{'y' * 60_000}\"\n"
                      f"data:\n{uses}\nlayers: [{{type: flatten}}]\n")
    with pytest.raises(SpecError) as caught:
        load_spec_document(path)
    [problem] = caught.value.problems
    assert problem.message == ("this value takes ${param} substitution past 1,048,576 characters in all "
                               "(through ${long})")
    assert problem.location.line > 5


def test_unclosed_references_are_scanned_in_linear_time(write_spec):
    import time

    path = write_spec('name: open\ninput: [3, 8, 8]\ndescription: "' + "${" * 300_000 + '"\n'
                      "layers: [{type: flatten}]\n")
    # The scan is one regular expression, so its work is invisible to lines_executed: this is the
    # one clock in these tests, with a margin no busy machine closes (about 0.01 s now; the
    # backtracking pattern it replaced took minutes)
    start = time.perf_counter()
    document = load_spec_document(path)
    assert time.perf_counter() - start < 5
    assert document.data["description"] == "${" * 300_000


def test_param_chains_are_bounded(write_spec):
    params = "\n".join(f'  p{i}: "${{p{i + 1}}}"' for i in range(5000))
    path = write_spec(f"name: chain\ninput: [3, 8, 8]\nparams:\n{params}\n  p5000: 1\nlayers: [{{type: flatten}}]\n")
    with pytest.raises(SpecError) as caught:
        load_spec_document(path)
    [problem] = caught.value.problems
    assert problem.message.startswith("param 'p0' refers to params more than 32 deep")
    assert problem.location.line == 4


def test_params_still_expand_inside_text(write_spec):
    path = write_spec("""
        name: ok
        input: [3, 8, 8]
        params: {a: "x${b}${b}", b: "yz"}
        description: "${a}-${a}"
        layers: [{type: flatten}]
    """)
    assert load_spec(path).spec.description == "xyzyz-xyzyz"


# --- --set values mean what a user means -------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("1e-5", 1e-5), ("1e-05", 1e-5), ("1E5", 1e5), ("1e+5", 1e5), ("2.5e-3", 2.5e-3), (".5", 0.5), ("5.", 5.0),
    ("+.5e1", 5.0), ("0.01", 0.01), ("1_0.5", 10.5)])
def test_set_parses_floats_as_yaml_1_2(write_spec, text, value):
    source = load_spec(write_spec(BASE), [f"training.optimizer.lr={text}"])
    assert source.spec.training.optimizer.lr == pytest.approx(value)


def test_set_negative_exponent_float_reaches_the_schema(write_spec):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(BASE), ["training.optimizer.weight_decay=-1e-3"])
    [problem] = caught.value.problems
    assert problem.message == "'weight_decay' must be at least 0.0, got -0.001"


def test_train_lr_override_text_is_a_number(write_spec):
    """`netspec train --lr 0.00001` builds f"training.optimizer.lr={lr}", and str(0.00001) == '1e-05'."""
    override = f"training.optimizer.lr={0.00001}"
    assert override == "training.optimizer.lr=1e-05"
    net = check_file(write_spec(BASE), [override])
    assert net.spec.training.optimizer.lr == 1e-5


def test_set_keeps_ints_strings_and_booleans(write_spec):
    document = load_spec_document(write_spec(BASE), ["classes=7", "training.optimizer.name=adam",
                                                     "training.optimizer.nesterov=true", "width=1e1"])
    assert document.data["params"]["classes"] == 7
    assert document.data["training"]["optimizer"]["name"] == "adam"
    assert document.data["training"]["optimizer"]["nesterov"] is True
    assert document.data["params"]["width"] == 10.0  # a float, which out_channels then refuses


def test_spec_files_read_yaml_1_2_floats_too(write_spec):
    path = write_spec(textwrap.dedent(BASE).replace("lr: 0.1", "lr: 1e-5"))
    assert load_spec(path).spec.training.optimizer.lr == 1e-5


def test_check_set_with_an_exponent_from_the_command_line(write_spec):
    from typer.testing import CliRunner

    from netspec.cli import app

    result = CliRunner().invoke(app, ["check", str(write_spec(BASE)), "--json",
                                      "--set", "training.optimizer.lr=1e-5"])
    assert result.exit_code == 0, result.output


# --- values that would pass check and crash later ----------------------------------------------------

def test_extends_with_a_nul_character_is_a_user_error(write_spec):
    path = write_spec('name: n\nextends: "base\\0.yaml"\n')
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    [problem] = caught.value.problems
    assert "control or invisible character" in problem.message and problem.location.line == 2


@pytest.mark.parametrize(("field", "value", "message"), [
    ("training.seed", "-1", "'seed' must be at least 0, got -1"),
    ("training.seed", str(2**32), f"'seed' must be less than {2**32}, got {2**32}"),
    ("data.val_fraction", "1.5", "'val_fraction' must be less than 1.0, got 1.5"),
    ("data.val_fraction", "0", "'val_fraction' must be more than 0.0, got 0"),
    ("data.resize", "100000", "'resize' must be at most 16384, got 100000"),
])
def test_out_of_range_training_values_are_refused_at_check(write_spec, field, value, message):
    with pytest.raises(SpecError) as caught:
        check_file(write_spec(BASE), [f"{field}={value}"])
    [problem] = caught.value.problems
    assert problem.message == message
    assert problem.location.file == f"--set {field}={value}"


def _removal_variant(write_spec, count: int, extra: str = "") -> Path:
    layers = "\n".join(f"  - {{name: l{i}, type: relu}}" for i in range(count))
    write_spec(f"name: base\ninput: [3, 8, 8]\nlayers:\n{layers}\n  - {{name: last, type: flatten}}\n", "base.yaml")
    removals = ", ".join(f"l{i}" for i in range(count))
    return write_spec(f"extends: base.yaml\nname: v\nremove: [{removals}{extra}]\n", "v.yaml")


def _load_expecting_errors(path: Path) -> None:
    with pytest.raises(SpecError):
        load_spec_document(path)


def test_removing_many_layers_stays_linear(write_spec):
    # Four times the layers must cost about four times the work; the quadratic version (the layer
    # index rebuilt for every removal) cost sixteen times
    work = {}
    for count in (500, 2000):
        path = _removal_variant(write_spec, count, ", l5")
        work[count] = lines_executed(lambda path=path: _load_expecting_errors(path))
    assert work[2000] / work[500] < 5, work
    with pytest.raises(SpecError) as caught:
        load_spec_document(_removal_variant(write_spec, 2000, ", l5"))
    [problem] = caught.value.problems
    assert problem.message == "'remove' names a layer the base does not have: 'l5'"
    variant = _removal_variant(write_spec, 2000)
    assert [layer["name"] for layer in load_spec_document(variant).data["layers"]] == ["last"]


BASE_FOR_EDITS = """
    name: base
    input: [3, 16, 16]
    layers:
      - {name: conv1, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}
      - {name: lrn1, type: lrn}
      - {name: conv2, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}
      - {name: residual, type: add, inputs: [conv2, conv1]}
      - {name: pool, type: global_avgpool2d}
      - {name: fc, type: linear, out_features: 10}
"""


def test_a_variant_replaces_and_inserts_layers(write_spec):
    write_spec(BASE_FOR_EDITS, "base.yaml")
    variant = write_spec("""
        extends: base.yaml
        name: edited
        replace:
          lrn1: [{name: bn1, type: batchnorm2d}, {name: act1, type: hardswish}]
        insert:
          - after: conv2
            layers: [{name: bn2, type: batchnorm2d}]
          - before: fc
            layers: [{type: dropout, p: 0.3}]
        patch:
          residual: {inputs: [bn2, conv1]}  # layers that name conv2 keep taking conv2 unless told
        """, "variant.yaml")
    net = check_file(variant)
    assert [cl.name for cl in net.layers] == ["conv1", "bn1", "act1", "conv2", "bn2", "residual", "pool",
                                              "dropout_1", "fc"]
    assert net.layer("bn1").location.file.endswith("variant.yaml") and net.layer("bn1").location.line == 4
    assert net.layer("residual").inputs == ("bn2", "conv1")


def test_insert_and_replace_name_a_missing_layer_with_a_suggestion(write_spec):
    write_spec(BASE_FOR_EDITS, "base.yaml")
    variant = write_spec("""
        extends: base.yaml
        name: edited
        replace: {lrn: {name: bn1, type: batchnorm2d}}
        insert: [{after: conv_2, layers: [{name: bn2, type: batchnorm2d}]}, {layers: []}]
        """, "variant.yaml")
    with pytest.raises(SpecError) as caught:
        load_spec(variant)
    problems = sorted((p.location.line, p.message, p.hint) for p in caught.value.problems)
    assert problems[0][:2] == (3, "'replace' names a layer the base does not have: 'lrn'")
    assert problems[0][2] == "did you mean 'lrn1'?"
    assert problems[1][1:] == ("'insert' names a layer the base does not have: 'conv_2'", "did you mean 'conv2'?")
    assert problems[2][1].startswith("each insertion names one of 'before' or 'after'")


def test_removing_a_layer_that_another_takes_as_input_is_located_at_the_removal(write_spec):
    write_spec(BASE_FOR_EDITS, "base.yaml")
    variant = write_spec("""
        extends: base.yaml
        name: edited
        remove: [lrn1, conv1]
        """, "variant.yaml")
    with pytest.raises(SpecError) as caught:
        load_spec(variant)
    [problem] = caught.value.problems
    assert problem.message == "removing 'conv1' leaves 'residual' (line 7) without its input"
    assert (problem.location.file.endswith("variant.yaml"), problem.location.line) == (True, 3)


@pytest.mark.parametrize(("value", "message"), [
    ("resnet", "'class_name': 'resnet' is not a class name: a capital letter, then letters"),
    ("None", "'class_name': 'None' is a Python keyword in the generated code; try 'NoneNet'"),
    ("F", "'class_name': 'F' is torch.nn.functional in the generated code; try 'FNet'"),
])
def test_a_class_name_that_would_break_the_generated_code_is_refused_at_its_line(write_spec, value, message):
    path = write_spec(BASE.replace("name: base\n", f"name: base\n    class_name: {value}\n"))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    [problem] = caught.value.problems
    assert message in problem.message and problem.location.line == 2  # the line after name:


def test_a_variant_keeps_its_base_class_name(tmp_path):
    base = textwrap.dedent(BASE).replace("name: base\n", "name: base\nclass_name: Small\n")
    (tmp_path / "base.yaml").write_text(base)
    (tmp_path / "deeper.yaml").write_text("extends: base.yaml\nname: deeper\nparams: {width: 16}\n")
    assert load_spec(tmp_path / "deeper.yaml").spec.class_name == "Small"

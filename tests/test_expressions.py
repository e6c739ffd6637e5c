"""Arithmetic in ${...}: parsed by netspec (never eval), integers kept integers, errors located."""

from __future__ import annotations

import pytest

from netspec import check_file
from netspec.errors import SpecError
from netspec.language.expressions import ExpressionError, evaluate, parse

PARAMS = {"width": 64, "groups": 4, "ratio": 0.25, "name": "x", "flag": True, "true_": False}


def value(text: str):
    return evaluate(text, PARAMS.get)


@pytest.mark.parametrize(("text", "expected"), [
    ("width * 4", 256),
    ("width // groups", 16),
    ("width / groups", 16.0),
    ("width % 10", 4),
    ("(width + 1) * 2 - 3", 127),
    ("-width + 100", 36),
    ("width * ratio", 16.0),
    ("2 + 3 * 4", 14),
    ("(2 + 3) * 4", 20),
    ("10 - 4 - 3", 3),
    ("1e3 / 4", 250.0),
    (" width ", 64),
])
def test_arithmetic_follows_pythons_rules(text, expected):
    result = value(text)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(("text", "message"), [
    ("width *", "ends where a number or a param was expected"),
    ("width ** 2", "'*' where a number or a param was expected"),
    ("(width + 1", "'(' without its ')'"),
    ("width + 1)", "unexpected ')'"),
    ("width / 0", "division by zero"),
    ("width // (groups - 4)", "division by zero"),
    ("name * 2", "param 'name' is 'x', not a number"),
    ("flag + 1", "'+' works on numbers, and True is true or false"),
    ("-flag", "'-' works on numbers"),
    ("flag < 2", "'<' works on numbers"),
    ("__import__('os')", "''' cannot appear in an expression"),
    ("width; 1", "';' cannot appear"),
    ("9007199254740992 * 2", "goes beyond 9,007,199,254,740,992"),
    ("(" * 17 + "1" + ")" * 17, "parentheses nested deeper than 16"),
    ("1 + " * 60 + "1", "longer than 200 characters"),
])
def test_bad_expressions_say_what_is_wrong(text, message):
    with pytest.raises(ExpressionError) as caught:
        value(text)
    assert message in caught.value.message


@pytest.mark.parametrize(("text", "expected"), [
    ("width == 64", True),
    ("width != 64", False),
    ("groups < 4", False),
    ("groups <= 4 and width >= 64", True),
    ("width > 100 or groups == 4", True),
    ("not width == 64", False),
    ("not (width == 1 or groups == 1)", True),
    ("width // groups == 16", True),
    ("width == 64 and groups == 4 and ratio < 1", True),
    ("flag and width == 64", True),
    ("not flag or groups == 4", True),
    ("flag == true_", False),
])
def test_conditions_compare_and_join_with_and_or_not(text, expected):
    assert value(text) is expected


@pytest.mark.parametrize(("text", "message"), [
    ("1 < width < 100", "comparisons cannot be chained"),
    ("width and groups == 4", "'and' joins comparisons, and 64 is a number"),
    ("not width", "'not' joins comparisons, and 64 is a number"),
    ("width == and", "'and' where a number or a param was expected"),
    ("width = 64", "'=' cannot appear in an expression"),
])
def test_bad_conditions_say_what_is_wrong(text, message):
    with pytest.raises(ExpressionError) as caught:
        value(text)
    assert message in caught.value.message


def test_an_undefined_param_leaves_the_report_to_the_lookup():
    assert evaluate("missing * 2", PARAMS.get) is None


SPEC = """
    name: widths
    input: [3, 32, 32]
    params: {width: 16, expansion: 4, groups: 2}
    layers:
      - {name: conv1, type: conv2d, out_channels: "${width * expansion}", kernel_size: 3, groups: 1}
      - {name: conv2, type: conv2d, out_channels: "${width * expansion // groups}", kernel_size: 1,
         groups: "${groups}"}
      - {type: flatten}
      - {name: fc, type: linear, out_features: "${width - 6}"}
"""


def test_a_spec_computes_its_widths_from_params(write_spec):
    net = check_file(write_spec(SPEC))
    assert [cl.output_shape[0] for cl in net.layers if cl.name in ("conv1", "conv2", "fc")] == [64, 32, 10]


def test_expressions_in_text_are_formatted(write_spec):
    spec = write_spec(SPEC.replace("name: widths", "name: widths\n    description: \"${width * 2} wide\""))
    assert check_file(spec).spec.description == "32 wide"


def test_a_bad_expression_is_located_at_its_layer(write_spec):
    spec = write_spec(SPEC.replace("${width - 6}", "${width - }"))
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    problem = caught.value.problems[0]
    assert problem.message == "in ${width -}: 'width -' ends where a number or a param was expected"
    assert problem.location.line == 9 and problem.layer == "fc"


def test_an_undefined_param_in_an_expression_is_named_with_a_suggestion(write_spec):
    spec = write_spec(SPEC.replace("${width * expansion}", "${widht * expansion}"))
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    problem = caught.value.problems[0]
    assert problem.message == "undefined param '${widht}'" and "width" in problem.hint


# --- the tree: parsed once, written back, simplified ---------------------------------------------

@pytest.mark.parametrize(("text", "written"), [
    ("planes * 4", "planes * 4"),
    ("(kernel - 1) // 2", "(kernel - 1) // 2"),
    ("(a * b) + c", "a * b + c"),
    ("a - (b - c)", "a - (b - c)"),
    ("a - b - c", "a - b - c"),
    ("a // (b * c)", "a // (b * c)"),
    ("-(a + b)", "-(a + b)"),
    ("not (a == 1 or b == 2)", "not (a == 1 or b == 2)"),
    ("a == 1 and (b == 2 or c == 3)", "a == 1 and (b == 2 or c == 3)"),
    ("(a + 1) == b", "a + 1 == b"),
    ("1e1 * x", "1e1 * x"),
])
def test_an_expression_is_written_back_with_the_parentheses_it_needs(text, written):
    expression = parse(text)
    assert expression.python() == written
    values = {"a": 7, "b": 3, "c": 2, "planes": 5, "kernel": 7, "x": 3}
    assert parse(written).evaluate(values.get) == expression.evaluate(values.get)


def test_the_same_text_is_parsed_once_and_keeps_its_names():
    assert parse("planes * width // 64") is parse("planes * width // 64")
    assert parse("stride == 1 and inp == out").names == {"stride", "inp", "out"}
    assert parse("1e1 + x").names == {"x"}  # an exponent is not a name


@pytest.mark.parametrize(("text", "constants", "simplest"), [
    ("planes * width_per_group // 64 * groups", {"width_per_group": 64, "groups": 1}, "planes"),
    ("planes * width_per_group // 64 * groups", {"width_per_group": 128, "groups": 1}, "planes * 2"),
    ("planes * width_per_group // 64 * groups", {"width_per_group": 4, "groups": 32}, "planes * 4 // 64 * 32"),
    ("inp * expand + 0", {"expand": 1}, "inp"),
    ("(kernel - 1) // 2", {}, "(kernel - 1) // 2"),
    ("(k - 1) // 2", {"k": 3}, "1"),
    ("1 * x - 0", {}, "x"),
    ("x / 1", {}, "x / 1"),  # a float: not an identity
    ("x // 0", {}, "x // 0"),  # left for evaluation to report
])
def test_simplifying_writes_constants_in_and_applies_integer_identities(text, constants, simplest):
    simplified = parse(text).simplified(constants)
    assert simplified.python() == simplest
    for x in (3, 5, 64, 96):  # it means what the written expression meant, for integer values
        values = {"planes": x, "inp": x, "kernel": x, "x": x, **constants}
        try:
            expected = parse(text).evaluate(values.get)
        except ExpressionError:
            continue
        assert simplified.evaluate(values.get) == expected


def test_a_module_keeps_the_expression_each_value_was_written_as(write_spec):
    from netspec.language.loader import load_spec_document

    loaded = load_spec_document(write_spec(MODULE_SPEC))
    definition = loaded.modules.definitions["block"]
    written = definition.layers[0]["out_channels"]
    assert written == parse("width * 2") and written.names == {"width"}
    assert loaded.data["layers"][0]["out_channels"] == 16  # each use evaluates it: width 8
    assert loaded.data["layers"][1]["out_channels"] == 24  # and width 12


MODULE_SPEC = """
    name: scoped
    input: [3, 8, 8]
    modules:
      block:
        params: {width: 8}
        layers:
          - {name: conv, type: conv2d, out_channels: "${width * 2}", kernel_size: 1}
    layers:
      - {name: one, module: block}
      - {name: two, module: block, params: {width: 12}}
      - {type: global_avgpool}
"""


@pytest.mark.parametrize(("text", "expected"), [("a + b", 3), ("a - b", 3), ("a * b", 0)])
def test_adding_or_subtracting_zero_is_no_division(text, expected):
    """`start + repetition` is `start + 0` in a first repetition: only /, // and % divide."""
    assert evaluate(text, {"a": 3, "b": 0}.get) == expected
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate(text.replace("+", "/").replace("-", "//").replace("*", "%"), {"a": 3, "b": 0}.get)

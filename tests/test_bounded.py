"""Checking stays bounded and near-linear in the document, however hostile: what a 3 KB or 400 KB
spec may ask for (long names times repeats, tens of thousands of layers or edits, huge numbers) is
refused early or done in one pass. Work is counted in lines of Python run, not read off a clock."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netspec.analysis.checker import check_file
from netspec.errors import SpecError
from netspec.language.loader import load_spec_document
from netspec.language.modules import MAX_LAYERS

from .conftest import SPECS_DIR, lines_executed


def _problems(path, overrides=None):
    with pytest.raises(SpecError) as caught:
        check_file(path, overrides)
    return caught.value.problems


def _repeated_module(name: str, layers: int, repeat: int) -> str:
    body = "\n".join(f"      - {{name: l{i}, type: relu}}" for i in range(layers))
    return f"name: r\ninput: [4]\nmodules:\n  blk:\n    layers:\n{body}\nlayers:\n" \
           f"  - {{name: {name}, module: blk, repeat: {repeat}}}\n"


def test_a_long_use_name_is_refused_before_any_scoped_name_is_built(write_spec):
    """400,000 characters times repeat 1024 built 400 MB of scoped names and reached a MemoryError."""
    work = {}
    for repeat in (1, 1024):
        path = write_spec(_repeated_module("u" * 20_000, 3, repeat), f"long{repeat}.yaml")
        work[repeat] = lines_executed(lambda path=path: _problems(path))
    assert work[1024] < 2 * work[1], work
    [problem] = _problems(path)
    assert problem.message == "a name is longer than 64 characters"
    assert problem.location.line == 10  # the use, after the three lines of the module's body


def test_a_module_repeated_past_the_layer_bound_is_refused_while_expanding(write_spec):
    """97 layers times repeat 1024 took 211 s and 716 MB to check."""
    path = write_spec(_repeated_module("stage", 97, 1024))
    work = lines_executed(lambda: _problems(path))
    [problem] = _problems(path)
    assert problem.message == f"the modules expand to more than {MAX_LAYERS:,} layers"
    assert work < 200 * MAX_LAYERS  # the expansion up to the bound (about 125 lines a layer), nothing after it


def test_a_flat_spec_past_the_layer_bound_is_refused_before_validation(write_spec):
    path = write_spec("name: c\ninput: [4]\nlayers:\n" + "  - {type: relu}\n" * (MAX_LAYERS + 1))
    [problem] = _problems(path)
    assert problem.message == f"the spec has {MAX_LAYERS + 1:,} layers, more than the {MAX_LAYERS:,} netspec checks"
    assert problem.location.line == 3


def _edited_variant(write_spec, count: int, edit: str) -> object:
    write_spec("name: base\ninput: [4]\nlayers:\n" + "".join(f"  - {{name: l{i}, type: relu}}\n"
                                                             for i in range(count)), f"base{count}.yaml")
    if edit == "replace":
        edits = "replace:\n" + "".join(f"  l{i}: {{name: r{i}, type: relu}}\n" for i in range(count))
    else:
        edits = "insert:\n" + "".join(f"  - {{after: l{i}, layers: [{{name: i{i}, type: relu}}]}}\n"
                                      for i in range(count))
    return write_spec(f"extends: base{count}.yaml\nname: v\n{edits}", f"{edit}{count}.yaml")


@pytest.mark.parametrize("edit", ["replace", "insert"])
def test_many_replacements_and_insertions_stay_linear(write_spec, edit):
    """16,000 replacements took 894 s and 19,000 insertions 264 s: the layer index was rebuilt per entry."""
    work = {}
    for count in (250, 1000):
        path = _edited_variant(write_spec, count, edit)
        work[count] = lines_executed(lambda path=path: load_spec_document(path))
    assert work[1000] / work[250] < 5, work
    names = [layer["name"] for layer in load_spec_document(_edited_variant(write_spec, 3, edit)).data["layers"]]
    assert names == (["r0", "r1", "r2"] if edit == "replace" else ["l0", "i0", "l1", "i1", "l2", "i2"])


def test_insertions_at_one_layer_keep_their_written_order(write_spec):
    write_spec("name: base\ninput: [4]\nlayers:\n  - {name: a, type: relu}\n", "base.yaml")
    entries = "".join(f"  - {{{side}: a, layers: [{{name: {name}, type: relu}}]}}\n"
                      for side, name in (("after", "x"), ("after", "y"), ("before", "p"), ("before", "q")))
    path = write_spec(f"extends: base.yaml\nname: v\ninsert:\n{entries}", "v.yaml")
    assert [layer["name"] for layer in load_spec_document(path).data["layers"]] == ["p", "q", "a", "x", "y"]


@pytest.mark.parametrize("number", [":".join(["1"] * 20_000), "9" * 5000, "1" + "0" * 100 + ".5"],
                         ids=["base-60", "5000-digits", "long-float"])
def test_a_huge_number_is_refused_by_its_length(write_spec, number):
    """A 250,000-part base-60 integer took 25 s to refuse; 5,000 digits was an internal error."""
    path = write_spec(f"name: n\ninput: [4]\nparams:\n  x: {number}\nlayers:\n  - {{type: relu}}\n")
    work = lines_executed(lambda: _problems(path))
    [problem] = _problems(path)
    assert problem.message == f"a number of {len(number):,} characters"
    assert problem.location.line == 4
    assert work < 20_000


def test_a_huge_number_given_with_set_is_a_user_error():
    result = subprocess.run([sys.executable, "-m", "netspec", "check", str(SPECS_DIR / "alexnet.yaml"), "--set",
                             "num_classes=" + "9" * 5000], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-500:]
    assert "error: cannot parse the value: a number of 5,000 characters" in result.stderr
    assert "internal error" not in result.stderr

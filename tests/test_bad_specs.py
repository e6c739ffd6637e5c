"""The corpus of bad specs: each file states, in '# expect:' lines, the exact problems it must
produce (file:line:column | layer | message | hint). A new bad_*.yaml is tested for free."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from netspec import check_file
from netspec.errors import SpecError, WeightsError

from .conftest import BAD_SPECS_DIR, SPECS_DIR, lines_executed

BAD_SPECS = sorted(BAD_SPECS_DIR.glob("bad_*.yaml"))


def expectations(path):
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("# expect: "):
            where, layer, message, hint = (part.strip() for part in line[len("# expect: "):].split(" | "))
            found.append((where, layer or None, message, hint or None))
    assert found, f"{path.name} states no '# expect:' line"
    return found


def actual(problems):
    return sorted(
        (f"{os.path.basename(p.location.file)}:{p.location.line}:{p.location.column}", p.layer, p.message, p.hint)
        for p in problems)


@pytest.mark.parametrize("spec", BAD_SPECS, ids=lambda p: p.name)
def test_bad_spec_reports_exactly_what_it_expects(spec, monkeypatch):
    monkeypatch.chdir(BAD_SPECS_DIR)
    with pytest.raises(SpecError) as caught:
        check_file(spec.name)
    assert actual(caught.value.problems) == sorted(expectations(spec))


@pytest.mark.parametrize("spec", [BAD_SPECS_DIR / "bad_groups.yaml", BAD_SPECS_DIR / "bad_many_errors.yaml"],
                         ids=lambda p: p.name)
def test_bad_spec_from_the_command_line_exits_2_without_traceback(spec):
    result = subprocess.run([sys.executable, "-m", "netspec", "check", str(spec)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    for where, layer, message, _ in expectations(spec):
        line_col = where.split(":", 1)[1]
        assert f"{spec}:{line_col}: error: layer '{layer}': {message}" in result.stderr


def test_json_errors_are_machine_readable():
    spec = BAD_SPECS_DIR / "bad_many_errors.yaml"
    result = subprocess.run([sys.executable, "-m", "netspec", "check", str(spec), "--json"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert {e["layer"] for e in doc["errors"]} == {"conv1", "pool1", "drop", "act"}
    assert all(e["file"] == str(spec) and e["line"] and e["column"] for e in doc["errors"])


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as caught:
        check_file(tmp_path / "nope.yaml")
    assert caught.value.problems[0].message == f"file not found: {tmp_path / 'nope.yaml'}"


def test_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("name: huge\n" + "# padding\n" * 200_000)
    with pytest.raises(SpecError, match="over the 1,048,576-byte limit"):
        check_file(path)


def test_non_utf8_bytes_are_located(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\ninput: [3, 8, 8]\n")
    with pytest.raises(SpecError) as caught:
        check_file(path)
    [problem] = caught.value.problems
    assert "not valid UTF-8 (byte 0xe9 at offset 9)" in problem.message
    assert problem.location.line == 1


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\ninput: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(SpecError, match="nesting is deeper than 64 levels"):
        check_file(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")
    with pytest.raises(SpecError, match="the file is empty"):
        check_file(path)


@pytest.mark.parametrize("layers", ["[" * 50_000 + "]" * 50_000, "{a: " * 30_000 + "1" + "}" * 30_000,
                                    "\n" + "- " * 50_000 + "1"],
                         ids=["brackets", "braces", "dashes"])
def test_very_deep_nesting_is_refused_without_crashing(tmp_path, layers):
    """PyYAML's composer recurses once per level: 50,000 '[' in a 100 KB file overflowed the C stack
    (a segfault) before netspec's depth limit applied. Run as a subprocess so a crash shows as a
    failing return code."""
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\ninput: [3, 8, 8]\nlayers: " + layers + "\n")
    result = subprocess.run([sys.executable, "-m", "netspec", "check", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    expected = rf"^{re.escape(str(path))}:[34]:\d+: error: nesting is deeper than 64 levels$"
    assert re.search(expected, result.stderr, re.MULTILINE)
    assert "Traceback" not in result.stderr + result.stdout


# --- hints for an input given in the wrong form ------------------------------------------------------

def test_an_input_written_height_width_channels_is_named_as_such():
    """--input is C×H×W; 224x224x3 used to give 'kernel 11×11 does not fit the 228×7 input'."""
    with pytest.raises(SpecError) as caught:
        check_file(SPECS_DIR / "alexnet.yaml", input_shape=(224, 224, 3))
    [problem] = caught.value.problems
    assert problem.layer == "conv1"
    assert "--input is C×H×W" in problem.hint and "did you mean --input 3x224x224?" in problem.hint


def test_a_spec_input_written_height_width_channels_is_named_as_such(tmp_path):
    spec = tmp_path / "hwc.yaml"
    spec.write_text("name: hwc\ninput: [32, 32, 3]\nlayers:\n  - {name: conv, type: conv2d, out_channels: 8, "
                    "kernel_size: 5}\n")
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    [problem] = caught.value.problems
    assert "did you mean input: [3, 32, 32], or layout: channels_last?" in problem.hint


def test_a_one_dimensional_input_to_an_image_layer_says_so():
    """--input 224 used to say 'move this layer before the flatten' where there is no flatten; an
    --input of another rank than the spec's is now refused at the option, with every size to give."""
    with pytest.raises(SpecError) as caught:
        check_file(SPECS_DIR / "alexnet.yaml", input_shape=(224,))
    [problem] = caught.value.problems
    assert problem.location.file == "--input 224"
    assert problem.message == ("--input 224 is flat features (F), and the spec's input is an image (C×H×W, "
                               "3×224×224)")
    assert "flatten" not in problem.hint and "--input 3x224x224" in problem.hint
    with pytest.raises(SpecError) as caught:
        check_file(SPECS_DIR / "alexnet.yaml", input_shape=(3, 224))
    assert caught.value.problems[0].message.startswith("--input 3x224 is a sequence (C×L)")


def test_a_one_dimensional_spec_input_to_an_image_layer_says_so(tmp_path):
    spec = tmp_path / "flat.yaml"
    spec.write_text("name: flat\ninput: [224]\nlayers:\n"
                    "  - {name: conv1, type: conv2d, out_channels: 4, kernel_size: 3}\n")
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    [problem] = caught.value.problems
    assert problem.layer == "conv1" and "the input is 1-D (224 features)" in problem.message
    assert "flatten" not in problem.hint and "C×H×W" in problem.hint and "3x224x224" in problem.hint


def test_an_image_layer_after_linear_layers_on_a_flat_input_does_not_mention_a_flatten(tmp_path):
    spec = tmp_path / "flat.yaml"
    spec.write_text("name: flat\ninput: [64]\nlayers:\n  - {name: fc, type: linear, out_features: 64}\n"
                    "  - {name: pool, type: maxpool2d, kernel_size: 2}\n")
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    [problem] = caught.value.problems
    assert problem.layer == "pool" and "flatten" not in problem.hint and "C×H×W" in problem.hint


def test_an_image_layer_after_a_flatten_still_says_so(tmp_path):
    spec = tmp_path / "flat.yaml"
    spec.write_text("name: flat\ninput: [3, 8, 8]\nlayers:\n  - {type: flatten}\n"
                    "  - {name: pool, type: maxpool2d, kernel_size: 2}\n")
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    [problem] = caught.value.problems
    assert problem.hint == "move this layer before the flatten, or remove it"


def test_input_hints_from_the_command_line():
    for option, expected in [("224x224x3", "did you mean --input 3x224x224?"), ("224", "is flat features (F)")]:
        result = subprocess.run([sys.executable, "-m", "netspec", "check", str(SPECS_DIR / "alexnet.yaml"),
                                 "--input", option], capture_output=True, text=True)
        assert result.returncode == 2 and expected in result.stderr, result.stderr


# --- work stays proportional to the document -----------------------------------------------------

def _checked_with_work(path, **options) -> tuple[list, int]:
    """The problems check_file reports, and the lines of Python it ran to find them."""
    problems = []

    def check():
        with pytest.raises(SpecError) as caught:
            check_file(path, **options)
        problems[:] = caught.value.problems

    return problems, lines_executed(check)


def test_an_input_too_large_to_hold_is_refused(tmp_path):
    spec = tmp_path / "big.yaml"
    spec.write_text("name: big\ninput: [3, 1048576, 1048576]\nlayers:\n  - {type: maxpool2d, kernel_size: 1048576}\n"
                    "  - {type: flatten}\n")
    [problem], work = _checked_with_work(spec)
    assert problem.message == "the input has 3,298,534,883,328 values per sample, beyond what a framework can build"
    assert (problem.location.line, problem.location.column) == (2, 1)
    assert work < 100_000  # a check of the whole alexnet.yaml runs about 25,000
    [problem], work = _checked_with_work(SPECS_DIR / "alexnet.yaml", input_shape=(3, 65536, 65536))
    assert problem.location.file == "--input 3x65536x65536"
    assert work < 100_000


def _many_mistakes(tmp_path, count: int):
    lines = ["name: many", "input: [3, 8, 8]", "params:", *(f"  param_{i}: {i}" for i in range(count)),
             "data:", *(f'  k{i}: "${{parm_{i}x}}"' for i in range(count)), "layers: [{type: flatten}]"]
    spec = tmp_path / f"many{count}.yaml"
    spec.write_text("\n".join(lines) + "\n")
    return _checked_with_work(spec)


def test_many_mistakes_among_many_names_stay_proportional(tmp_path):
    """Misspelt references among many params: a did-you-mean over every name for every mistake
    took minutes at 20,000, and each hint listed all the names. Four times the mistakes among four
    times the names must now cost at most about four times the work (quadratic: sixteen)."""
    small, small_work = _many_mistakes(tmp_path, 1000)
    large, large_work = _many_mistakes(tmp_path, 4000)
    assert (len(small), len(large)) == (1000, 4000)
    assert max(len(p.hint or "") for p in large) < 300
    assert large_work / small_work < 5, (small_work, large_work)


def _blocks_spec(tmp_path, count: int, *, duplicate: bool):
    blocks = [f"  - {{name: b{i}, layers: [{{name: l{i}, type: linear, out_features: 1, in_features: 2}}]}}"
              for i in range(count)]
    spec = tmp_path / f"blocks{count}{'-duplicate' if duplicate else ''}.yaml"
    spec.write_text("name: blocks\ninput: [3, 8, 8]\nblocks:\n  - {name: f, layers: [{type: flatten}]}\n"
                    + "\n".join(blocks) + "\n" + ("  - {name: b0, layers: [{type: relu}]}\n" if duplicate else ""))
    return spec


def test_many_blocks_and_wrong_in_features_stay_proportional(tmp_path):
    found = {}
    for duplicate in (True, False):
        small_work = _checked_with_work(_blocks_spec(tmp_path, 500, duplicate=duplicate))[1]
        found[duplicate], large_work = _checked_with_work(_blocks_spec(tmp_path, 2000, duplicate=duplicate))
        assert large_work / small_work < 5, (duplicate, small_work, large_work)
    assert "two blocks are named 'b0'" in {p.message for p in found[True]}
    assert len(found[False]) == 2000
    assert all(p.message.startswith("in_features is 2 but") for p in found[False][1:])


def test_a_megabyte_of_nested_lists_is_refused_before_it_is_composed(tmp_path):
    """Composing 480,000 nested values took seconds before the value limit applied: past the
    limit, a larger document must not cost more work."""
    found = {}
    for count in (4000, 8000):
        path = tmp_path / f"lists{count}.yaml"
        path.write_text("name: x\ninput: [3, 8, 8]\nlayers: [" + ",".join(["[" * 60 + "1" + "]" * 60] * count) + "]\n")
        found[count] = _checked_with_work(path)
    [problem] = found[8000][0]
    assert problem.message == "document holds more than 100,000 values"
    assert problem.location.line == 3
    assert found[8000][1] <= found[4000][1] * 1.1, {count: work for count, (_, work) in found.items()}


def test_a_very_deep_set_key_is_a_user_error():
    [problem], work = _checked_with_work(SPECS_DIR / "alexnet.yaml", overrides=["a." * 3000 + "b=1"])
    assert problem.message == "the key is nested deeper than 64 levels"
    assert problem.location.file.startswith("overrides entry 'a.a.")  # the Python API's wording
    assert work < 100_000


def test_weights_that_do_not_fit_name_eight_of_each_kind_and_count_the_rest():
    from netspec.files.weights import misfit

    expected = {f"layer{i}.weight": (4, 4) for i in range(20)}
    given = {f"other{i}.weight": (4, 4) for i in range(9)}
    message = misfit(expected, given, "w.safetensors").problems[0].message
    assert "missing from the file: layer0.weight, layer1.weight, layer10.weight" in message
    assert "... and 12 more (20 in all)" in message
    assert "not in the model: other0.weight" in message and "... and 1 more (9 in all)" in message
    assert misfit(expected, dict(expected), "w.safetensors") is None


def test_a_training_state_given_as_weights_points_to_the_checkpoints_weights(tmp_path):
    torch = pytest.importorskip("torch")
    from netspec.files.state_files import read_state_dict

    path = tmp_path / "state.pt"
    torch.save({"loop": {"epoch": 1}, "optimizer": {"state": {}, "param_groups": []}, "rng": {}}, path)
    with pytest.raises(WeightsError) as caught:
        read_state_dict(path)
    [problem] = caught.value.problems
    assert problem.message == f"{path} does not hold a state dict (a mapping of names to tensors)"
    assert "checkpoints/best.safetensors" in problem.hint
    torch.save([1, 2], path)
    with pytest.raises(WeightsError) as caught:
        read_state_dict(path)
    assert caught.value.problems[0].hint is None

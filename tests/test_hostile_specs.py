"""Hostile and random specs. Code smuggled through any string that reaches generated source is
refused at validation with nothing written; random valid specs get shapes and parameter counts
that a real forward pass confirms; random invalid documents never crash the checker."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from netspec.analysis.checker import check_file
from netspec.cli import app
from netspec.errors import SpecError

PAYLOAD = "x'); import os; os.system('touch /tmp/netspec-pwned') #"
BASE = {  # each field's harmless YAML text
    "name": "victim",
    "block": "features",
    "layer": "fc",
    "activation": "relu",
    "padding": "1",
    "param": "4",
    "type": "linear",
}


def hostile_spec(field: str) -> str:
    values = {**BASE, field: repr(PAYLOAD)}
    return textwrap.dedent(f"""\
        name: {values['name']}
        input: [3, 8, 8]
        params: {{width: {values['param']}}}
        blocks:
          - name: {values['block']}
            layers:
              - {{name: conv, type: conv2d, out_channels: 4, kernel_size: 3, padding: {values['padding']},
                 activation: {values['activation']}}}
              - {{type: flatten}}
              - {{name: {values['layer']}, type: {values['type']}, out_features: '${{width}}'}}
        """)


@pytest.mark.parametrize("field", sorted(BASE))
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_code_through_any_string_field_is_refused_and_nothing_is_written(tmp_path, field, backend):
    spec = tmp_path / "spec.yaml"
    spec.write_text(hostile_spec(field))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["export", str(spec), "--backend", backend, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "error" in result.output and "Traceback" not in result.output
    assert not out.exists()


MODULE_BASE = {"module": "block", "use": "stage", "param": "4", "input": "input", "output": "fc"}


def hostile_module_spec(field: str) -> str:
    values = {**MODULE_BASE, field: repr(PAYLOAD)}
    return textwrap.dedent(f"""\
        name: victim
        input: [3, 8, 8]
        modules:
          {values['module']}:
            params: {{planes: 2}}
            layers:
              - {{name: conv, type: conv2d, out_channels: '${{planes}}', kernel_size: 3, inputs: {values['input']}}}
        layers:
          - {{name: {values['use']}, module: {values['module']}, params: {{planes: {values['param']}}}}}
          - {{type: flatten}}
          - {{name: fc, type: linear, out_features: 2}}
        outputs: [{values['output']}]
        """)


@pytest.mark.parametrize("field", [*sorted(MODULE_BASE), "none"])
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_code_through_a_module_or_an_edge_is_refused(tmp_path, field, backend):
    """Module names, uses, their params and `inputs`/`outputs` references carry no code either;
    the same spec without the payload ("none") exports."""
    pytest.importorskip(backend)
    spec = tmp_path / "spec.yaml"
    spec.write_text(hostile_module_spec(field))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["export", str(spec), "--backend", backend, "-o", str(out)])
    assert "Traceback" not in result.output
    if field == "none":
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2 and "error" in result.output, result.output
    assert not out.exists()


def test_the_unpoisoned_base_spec_exports(tmp_path):
    """The control: the same spec without a payload is fine, so each refusal above is the payload's."""
    pytest.importorskip("torch")
    spec = tmp_path / "spec.yaml"
    spec.write_text(hostile_spec("none"))
    result = CliRunner().invoke(app, ["export", str(spec), "--backend", "torch", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output


# --- random valid specs: the checker against a real forward pass -------------------------------------

conv = st.fixed_dictionaries({
    "type": st.just("conv2d"), "out_channels": st.integers(1, 12), "kernel_size": st.integers(1, 5),
    "stride": st.integers(1, 3), "padding": st.one_of(st.integers(0, 2), st.just("same")),
    "dilation": st.integers(1, 2)})
pool = st.fixed_dictionaries({
    "type": st.sampled_from(["maxpool2d", "avgpool2d"]), "kernel_size": st.integers(1, 3),
    "stride": st.integers(1, 3), "padding": st.integers(0, 1), "ceil_mode": st.booleans()})
simple = st.fixed_dictionaries({"type": st.sampled_from(["relu", "batchnorm2d", "dropout", "lrn"])})
adaptive = st.fixed_dictionaries({"type": st.just("adaptive_avgpool2d"), "output_size": st.integers(1, 4)})


@st.composite
def networks(draw):
    layers = draw(st.lists(st.one_of(conv, pool, simple, adaptive), min_size=1, max_size=6))
    layers += [{"type": "flatten"}, {"type": "linear", "out_features": draw(st.integers(1, 7))}]
    size = draw(st.integers(4, 24))
    return {"name": "random", "input": [draw(st.integers(1, 4)), size, size], "layers": layers}


def write(tmp_path, document) -> object:
    import yaml

    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.mark.torch
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=networks())
def test_random_valid_specs_agree_with_a_torch_forward_pass(tmp_path, document):
    torch = pytest.importorskip("torch")
    from netspec.codegen.backend import get_backend

    try:
        net = check_file(write(tmp_path, document))
    except SpecError as error:  # a shape that collapses, pooling padding over half the window, ...
        assert error.problems and all(p.message for p in error.problems)
        return
    model = get_backend("torch").load(net).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *net.input_shape))
    assert tuple(out.shape[1:]) == net.output_shape
    assert sum(p.numel() for p in model.parameters()) == net.totals.trainable_params
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    assert buffers == net.totals.non_trainable_params


@st.composite
def graphs(draw):
    """A random graph: each layer takes earlier layers (or the input), merges join two or three,
    and whatever no layer takes is an output."""
    layers, names, used = [], ["input"], set()
    for i in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["conv2d", "relu6", "maxpool2d", "add", "concat", "multiply", "gate"]))
        merge = kind in ("add", "concat", "multiply")
        inputs = draw(st.lists(st.sampled_from(names), min_size=2, max_size=2 if kind == "multiply" else 3)
                      if merge else st.lists(st.sampled_from(names), min_size=1, max_size=1))
        layer = {"name": f"n{i}", "inputs": inputs}
        if kind == "conv2d":
            layer.update(type="conv2d", out_channels=draw(st.integers(1, 6)), kernel_size=draw(st.integers(1, 3)),
                         padding="same", stride=draw(st.integers(1, 2)))
        elif kind == "maxpool2d":
            layer.update(type="maxpool2d", kernel_size=2, stride=1, padding="same")
        elif kind == "gate":  # a C×1×1 squeeze for multiply
            layer.update(type="global_avgpool2d", keepdims=True)
        else:
            layer["type"] = kind
        layers.append(layer)
        used.update(inputs)
        names.append(layer["name"])
    outputs = [name for name in names[1:] if name not in used]
    size = draw(st.integers(4, 12))
    return {"name": "random-graph", "input": [draw(st.integers(1, 4)), size, size], "layers": layers,
            "outputs": outputs}


@pytest.mark.torch
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=graphs())
def test_random_graphs_agree_with_a_torch_forward_pass(tmp_path, document):
    """Either the checker refuses the graph with located problems (merges of shapes that do not
    fit), or the generated model returns every output in the shape the checker says."""
    torch = pytest.importorskip("torch")
    from netspec.codegen.backend import get_backend

    try:
        net = check_file(write(tmp_path, document))
    except SpecError as error:
        assert error.problems and all(p.message and p.location for p in error.problems)
        return
    model = get_backend("torch").load(net).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *net.input_shape))
    outs = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape[1:]) for o in outs] == [net.layer(name).output_shape for name in net.output_names]
    assert sum(p.numel() for p in model.parameters()) == net.totals.trainable_params


# --- random invalid documents: a clear error, never a crash -------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, width=32),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
layer_like = st.dictionaries(st.sampled_from(["name", "type", "out_channels", "kernel_size", "stride", "padding",
                                              "out_features", "p", "groups", "activation", "bogus", "inputs",
                                              "module", "repeat", "first", "when", "params"]),
                             values, max_size=5)
module_like = st.dictionaries(st.sampled_from(["params", "layers", "sequential", "bogus"]),
                              st.one_of(values, st.lists(layer_like, max_size=3)), max_size=3)
documents = st.fixed_dictionaries(
    {"name": st.one_of(st.just("n"), values), "input": st.one_of(st.just([3, 8, 8]), values),
     "layers": st.one_of(st.lists(layer_like, max_size=4), values)},
    optional={"params": values, "blocks": values, "training": values, "data": values, "outputs": values,
              "modules": st.one_of(values, st.dictionaries(st.sampled_from(["m", "n", "1x"]), module_like,
                                                           max_size=2))})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents)
def test_random_invalid_documents_never_crash(tmp_path, document):
    try:
        check_file(write(tmp_path, document))
    except SpecError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.message and problem.location is not None


# Module documents: uses, params, `when`, `repeat` and `inputs` drawn from values that half make sense,
# so expansion itself is exercised (found: `when: false` with `inputs: []`, a list as a layer's name).
near = st.one_of(st.none(), st.booleans(), st.integers(-3, 5),
                 st.sampled_from(["m", "n", "input", "r", "${p}", "${q}", "relu", "a.b", "x"]))
near_values = st.recursive(near, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["p", "q", "r"]), inner, max_size=2)), max_leaves=6)
near_layer = st.dictionaries(
    st.sampled_from(["name", "type", "module", "inputs", "repeat", "first", "when", "params", "out_channels",
                     "kernel_size", "activation"]),
    st.one_of(near_values, st.sampled_from(["relu", "conv2d", "add", "m", "n", 1, 2, True])), max_size=5)
near_module = st.fixed_dictionaries({"layers": st.lists(near_layer, min_size=1, max_size=4)},
                                    optional={"params": near_values, "sequential": near_values})
module_documents = st.fixed_dictionaries(
    {"name": st.just("t"), "input": st.just([3, 8, 8]),
     "modules": st.dictionaries(st.sampled_from(["m", "n"]), near_module, max_size=2),
     "layers": st.lists(near_layer, min_size=1, max_size=4)},
    optional={"outputs": near_values, "params": st.dictionaries(st.sampled_from(["p", "q"]), near_values)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=module_documents)
def test_random_module_documents_never_crash(tmp_path, document):
    """A clear error, or a network both backends render."""
    from netspec.codegen.backend import get_backend

    try:
        net = check_file(write(tmp_path, document))
    except SpecError as error:
        assert error.problems and all(p.message and p.location is not None for p in error.problems)
        return
    for backend in ("torch", "keras"):
        if importlib.util.find_spec(backend):
            assert get_backend(backend).emit(net)


# --- names that would break the generated code ------------------------------------------------------

# Every name the generated modules of either backend bind at module level (imports, helper classes),
# the builtins they call, dunders and private names (`self.__fc` is mangled to `_Net__fc` inside a
# class) and keywords. (`layers`, `ops` and `np` are free: the generated code never calls them bare.)
GENERATED_NAMES = ["F", "nn", "torch", "keras", "OrderedDict", "LocalResponseNorm", "NegInfPadding2D",
                   "AdaptiveAvgPool2D", "super", "float", "int", "tuple", "list", "isinstance", "sum", "range",
                   "staticmethod"]
PRIVATE_NAMES = ["__init__", "__class__", "__fc", "_fc", "_", "__"]
KEYWORDS = ["class", "None", "lambda"]


def named_spec(spec: str = "victim", block: str = "features", layer: str = "fc") -> str:
    return textwrap.dedent(f"""\
        name: {spec}
        input: [3, 8, 8]
        blocks:
          - name: {block}
            layers:
              - {{name: conv, type: conv2d, out_channels: 4, kernel_size: 3}}
              - {{type: flatten}}
              - {{name: {layer}, type: linear, out_features: 4}}
        """)


@pytest.mark.parametrize("name", GENERATED_NAMES + PRIVATE_NAMES + KEYWORDS)
@pytest.mark.parametrize("where", ["layer", "block"])
def test_names_the_generated_code_uses_are_refused_for_layers_and_blocks(tmp_path, name, where):
    spec = tmp_path / "spec.yaml"
    spec.write_text(named_spec(**{where: repr(name)}))
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    [problem] = caught.value.problems
    line = 4 if where == "block" else 8
    assert problem.location.line == line and problem.location.column > 1
    assert repr(name) in problem.message and ("try '" in problem.message or "start with a letter" in problem.message)
    if where == "layer":
        assert problem.layer == name


@pytest.mark.parametrize("name", GENERATED_NAMES + KEYWORDS + ["f", "f-", "none", "Torch", "NN", "numpy"])
def test_names_the_generated_code_uses_are_refused_for_the_spec(tmp_path, name):
    """The spec name becomes the torch class (CamelCase: `f` -> `F`), the Keras builder
    (`build_<name>`) and the file name (`torch.py` would shadow the torch package)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(named_spec(spec=repr(name)))
    with pytest.raises(SpecError) as caught:
        check_file(spec)
    [problem] = caught.value.problems
    assert (problem.location.line, problem.location.column) == (1, 1)
    assert repr(name) in problem.message and "-net'" in problem.message


@pytest.mark.parametrize("name", ["__fc", "_fc", "__init__"])
def test_private_names_are_refused_from_the_command_line(tmp_path, name):
    spec = tmp_path / "spec.yaml"
    spec.write_text(named_spec(layer=name))
    result = CliRunner().invoke(app, ["export", str(spec), "--backend", "torch", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "spec.yaml:8:" in result.output and "underscore" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["Fc", "features_", "torch_net", "nn2", "F1", "layer_1", "alexnet"])
def test_names_near_reserved_ones_are_fine(tmp_path, name):
    spec = tmp_path / "spec.yaml"
    spec.write_text(named_spec(spec=name, block=f"b{name}", layer=name))
    check_file(spec)


@pytest.mark.torch
def test_the_torch_class_never_shadows_an_import(tmp_path):
    """Whatever a valid spec is named, the generated class is not torch, F or nn."""
    pytest.importorskip("torch")
    from netspec.codegen.backend import get_backend

    for name in ["Fx", "fnet", "F-1", "nn-x"]:
        spec = tmp_path / "spec.yaml"
        spec.write_text(named_spec(spec=name))
        net = check_file(spec)
        source = get_backend("torch").emit(net)
        assert "class F(" not in source and "class Nn(" not in source
        model = get_backend("torch").load(net)
        assert model(__import__("torch").zeros(1, 3, 8, 8)).shape == (1, 4)


# --- terminal control and bidi characters never reach the output ----------------------------------

ESC = "\x1b[2J\x1b]0;pwned\x07"  # clear the screen, retitle the window
BIDI = "\u202eevil\u202c\u2066x\u2069"  # right-to-left override, isolates
UNSAFE = ESC + BIDI + "\x9b31m\u200b"  # and a C1 CSI, a zero-width space
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
Q = UNSAFE.encode("unicode_escape").decode().replace('"', '\\"')  # as YAML double-quoted text


def _check_output(args, cwd=None) -> str:
    result = subprocess.run([sys.executable, "-m", "netspec", "check", *args], capture_output=True, text=True,
                            cwd=cwd, env={**os.environ, "COLUMNS": "100"})
    output = result.stdout + result.stderr
    assert result.returncode in (0, 2), output
    assert "Traceback" not in output
    return output


HOSTILE_TEXT_SPECS = {
    "unknown key": f'name: n\ninput: [3, 8, 8]\nlayers: [{{type: flatten, "{Q}": 1}}]\n',
    "layer name": f'name: n\ninput: [3, 8, 8]\nlayers: [{{type: flatten, name: "{Q}"}}]\n',
    "spec name": f'name: "{Q}"\ninput: [3, 8, 8]\nlayers: [{{type: flatten}}]\n',
    "block name": f'name: n\ninput: [3, 8, 8]\nblocks: [{{name: "{Q}", layers: [{{type: flatten}}]}}]\n',
    "layer type": f'name: n\ninput: [3, 8, 8]\nlayers: [{{type: "{Q}"}}]\n',
    "activation": f'name: n\ninput: [3, 8, 8]\nlayers: [{{type: flatten}}, '
                  f'{{type: linear, out_features: 2, activation: "{Q}"}}]\n',
    "param name": f'name: n\ninput: [3, 8, 8]\nparams: {{"{Q}": 1}}\nlayers: [{{type: flatten}}]\n',
    "param reference": f'name: n\ninput: [3, 8, 8]\nlayers: [{{type: flatten}}, '
                       f'{{type: linear, out_features: "${{{Q}}}"}}]\n',
    "duplicate key": f'name: n\ninput: [3, 8, 8]\n"{Q}": 1\n"{Q}": 2\nlayers: [{{type: flatten}}]\n',
    "description": f'name: n\ndescription: "{Q}"\ninput: [3, 8, 8]\nlayers: [{{type: flatten}}]\n',
    "description, too long": f'name: n\ndescription: "{Q * 300}"\ninput: [3, 8, 8]\nlayers: [{{type: flatten}}]\n',
    "dataset": f'name: n\ninput: [3, 8, 8]\nlayers: [{{type: flatten}}]\ndata: {{dataset: "{Q}"}}\n',
    "extends": f'name: n\nextends: "{Q}.yaml"\n',
    "patch": f'name: n\nextends: base.yaml\npatch: {{"{Q}": {{p: 0.1}}}}\nremove: ["{Q}"]\n',
    "padding": f'name: n\ninput: [3, 8, 8]\nlayers: [{{type: conv2d, out_channels: 2, kernel_size: 3, '
               f'padding: "{Q}"}}]\n',
}


@pytest.mark.parametrize("where", sorted(HOSTILE_TEXT_SPECS))
def test_control_and_bidi_characters_are_escaped_in_check_output(tmp_path, where):
    (tmp_path / "base.yaml").write_text("name: base\ninput: [3, 8, 8]\nlayers: [{name: drop, type: dropout}]\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(HOSTILE_TEXT_SPECS[where])
    output = _check_output([str(spec)])
    assert not FORBIDDEN.search(output), repr(output)
    if where not in ("description", "description, too long"):  # check never prints a description
        assert "\\x1b[2J" in output or "\\x1b" in output, output


def test_control_characters_in_set_options_are_escaped(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: n\ninput: [3, 8, 8]\nparams: {width: 2}\nlayers: [{type: flatten}]\n")
    for option in [f"{UNSAFE}=1", f"width={UNSAFE}", f"training.{UNSAFE}=1", f"training.optimizer.name={UNSAFE}"]:
        output = _check_output([str(spec), "--set", option])
        assert not FORBIDDEN.search(output), repr(output)
        assert "\\x1b" in output


def test_a_spec_file_named_with_control_characters_is_shown_escaped(tmp_path):
    name = f"net{ESC}[bold]x.yaml"
    (tmp_path / name).write_text("name: n\ninput: [3, 8, 8]\nlayers: [{type: flatten}]\n")
    (tmp_path / f"bad{ESC}.yaml").write_text("name: n\ninput: [3, 8, 8]\nlayers: [{type: flattn}]\n")
    output = _check_output([name], cwd=tmp_path)
    assert not FORBIDDEN.search(output), repr(output)
    assert "net\\x1b[2J\\x1b]0;pwned\\x07[bold]x.yaml" in output  # markup shown as written, not applied
    output = _check_output([f"bad{ESC}.yaml"], cwd=tmp_path)
    assert not FORBIDDEN.search(output), repr(output)
    assert "bad\\x1b[2J" in output


def test_error_messages_show_user_text_as_written(tmp_path):
    """Rich would turn ':smile:' into an emoji and '[bold]' into style; a key is shown as the spec wrote it."""
    spec = tmp_path / "spec.yaml"
    spec.write_text('name: n\ninput: [3, 8, 8]\nlayers: [{type: flatten, ":smile:": 1, "[bold]x": 2}]\n')
    output = _check_output([str(spec)])
    assert "unknown key ':smile:'" in output and "unknown key '[bold]x'" in output


def test_every_name_the_generated_code_binds_or_calls_is_reserved():
    """If a template gains an import, a helper class or a builtin call, this fails until the name
    is added to GENERATED_CODE_NAMES (so no spec can take it)."""
    import ast
    import builtins

    from netspec.layers.base import generated_code_names
    from netspec_keras.codegen import render as render_keras
    from netspec_torch.codegen import network_class_name
    from netspec_torch.codegen import render as render_torch

    from .conftest import ALL_SPECS, BAD_SPECS_DIR

    used: set[str] = set()
    spec_classes: set[str] = set()  # each network's own class: the spec's class_name, or its name in CamelCase
    for spec in [*ALL_SPECS, BAD_SPECS_DIR / "zoo.yaml"]:
        net = check_file(spec)
        spec_classes.add(network_class_name(net))
        for render in (render_torch, render_keras):
            module = ast.parse(render(net)[0])
            for node in module.body:  # module level: imports, classes, functions
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    used |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name[:1].isupper():
                    used.add(node.name)  # a helper class (the network's own class is named after the spec)
            used |= {node.id for node in ast.walk(module) if isinstance(node, ast.Name) and hasattr(builtins, node.id)}
    assert spec_classes == {"AlexNet", "AlexnetCifar10", "AlexnetKeras", "Zoo"}
    reserved = set(generated_code_names())
    assert used - spec_classes <= reserved, sorted(used - spec_classes - reserved)

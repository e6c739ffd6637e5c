"""What passes `netspec check` builds, and computes what the checker says, in the backends: each
construct that used to pass the check and then fail in torch (or silently differ) is refused at
its line, or generated from the parsed expression."""

from __future__ import annotations

import textwrap

import pytest

from netspec.analysis.checker import check_file
from netspec.errors import SpecError

MODULE = """
    name: probe
    input: [4]
    params: {{e1: 5}}
    modules:
      {module}:
        params: {{planes: 2, k: 12}}
        layers:
{body}
    layers:
{uses}
    {extra}
"""
FC = "          - {name: c, type: linear, out_features: 4}\n"
USE = "      - {name: b, module: blk}\n"


def _spec(body: str = FC, uses: str = USE, module: str = "blk", extra: str = "") -> str:
    """The probe spec: its module's body starts at line 8, its uses after the body's 'layers:'."""
    return textwrap.dedent(MODULE).format(module=module, body=body.rstrip("\n"), uses=uses.rstrip("\n"), extra=extra)


CASES = {
    "nn-module-attribute": (_spec(body="          - {name: forward, type: linear, out_features: 4}\n"), 8,
                            "'forward' is an attribute the generated torch class inherits from torch.nn.Module"),
    "training-attribute": (_spec(body=FC + "          - {name: training, type: relu}\n"), 9,
                           "'training' is an attribute the generated torch class inherits"),
    "output-inside-a-use": (_spec(body=FC + "          - {name: d, type: relu}\n", extra="outputs: [b.c]"), 12,
                            "'b.c' is a layer inside the module use 'b'; outputs name the spec's own layers"),
    "input-inside-a-use": (_spec(body=FC + "          - {name: d, type: relu}\n",
                                 uses=USE + "      - {name: f, type: relu, inputs: [b.c]}\n"), 12,
                           "'b.c' is a layer inside the module use 'b'; a layer takes the spec's own layers"),
    "input-from-outside": (_spec(body="          - {name: c, type: linear, out_features: 4, inputs: [first]}\n",
                                 uses="      - {name: first, type: relu}\n" + USE +
                                 "      - {name: s, type: add, inputs: [b, first]}\n"), 8,
                           "a module's layer takes 'first', which is not one of the module's layers"),
    "leading-zero": (_spec(body='          - {name: c, type: linear, out_features: "${planes * 02}"}\n'), 8,
                     "in ${planes * 02}: '02' has a leading zero"),
    "full-width-digit": (_spec(body='          - {name: c, type: linear, out_features: "${planes * ２}"}\n'), 8,
                         "in ${planes * ２}: '２' cannot appear in an expression"),
    "module-none": (_spec(module="none", uses="      - {name: b, module: none}\n"), 5,
                    "module name 'none' clashes with 'None', a Python keyword"),
    "module-true": (_spec(module='"True"', uses="      - {name: b, module: \"True\"}\n"), 5,
                    "module name 'True' clashes with 'True', a Python keyword"),
    "add-of-3000": (_spec(uses="".join(f"      - {{name: l{i}, type: relu, inputs: [input]}}\n" for i in range(3000))
                          + f"      - {{name: s, type: add, inputs: [{', '.join(f'l{i}' for i in range(3000))}]}}\n"),
                    3010, "add takes at most 256 inputs, got 3,000"),
}


@pytest.mark.parametrize("case", CASES)
def test_what_a_backend_cannot_build_is_refused_at_its_line(write_spec, case):
    text, line, message = CASES[case]
    with pytest.raises(SpecError) as caught:
        check_file(write_spec(text))
    found = [p for p in caught.value.problems if message in p.message]
    assert found, caught.value.format()
    assert found[0].location.line == line, caught.value.format()


def test_the_unchanged_probe_checks(write_spec):
    """The same template with nothing wrong: the cases above fail for their one change."""
    assert [cl.name for cl in check_file(write_spec(_spec())).layers] == ["b.c"]


WHEN_WITH_AN_EXPONENT = """
    name: exponent
    input: [4]
    params: {e1: 5}
    modules:
      blk:
        params: {k: 12}
        layers:
          - {name: c, type: linear, out_features: 4}
          - {name: d, type: linear, out_features: 3, when: "${k > 1e1}"}
    layers:
      - {name: b1, module: blk}
      - {name: b2, module: blk, params: {k: 8}}
      - {name: head, type: linear, out_features: 2, inputs: [b2]}
      - {name: both, type: concat, inputs: [b1, head]}
"""


@pytest.mark.torch
def test_a_condition_is_generated_from_its_tokens_not_its_text(write_spec):
    """With a param named e1, ${k > 1e1} was generated as `k > 15` (the exponent taken for the
    param): the torch model then lacked b1.d, which the checker and Keras have."""
    import torch

    from netspec.codegen.backend import get_backend

    from .torch_helpers import per_layer

    net = check_file(write_spec(WHEN_WITH_AN_EXPONENT))
    assert [cl.name for cl in net.layers] == ["b1.c", "b1.d", "b2.c", "head", "both"]
    backend = get_backend("torch")
    source = backend.emit(net)
    assert "k > 1e1" in source and "15" not in source
    measured, _ = per_layer(backend, net, backend.load(net), torch.randn(2, 4))
    assert measured == [(cl.output_shape, cl.params, cl.non_trainable) for cl in net.layers]


@pytest.mark.torch
def test_the_static_torch_attribute_names_cover_the_installed_torch():
    from torch import nn

    from netspec_torch.names import MODULE_ATTRIBUTES

    public = {name for name in dir(nn.Module()) if not name.startswith("_")}
    assert public <= MODULE_ATTRIBUTES, sorted(public - MODULE_ATTRIBUTES)


def test_each_backend_owns_the_names_its_generated_code_binds(write_spec):
    """The core lists no backend's names: it collects each backend's static set (names.py, under the
    entry-point group netspec.reserved_names), and refuses a spec's names by them, with what they are."""
    import re
    from pathlib import Path

    import netspec_keras
    from netspec.layers.base import generated_code_names, inherited_attribute_names
    from netspec_keras import names as keras_names
    from netspec_torch import names as torch_names

    assert set(torch_names.MODULE_NAMES) | set(keras_names.MODULE_NAMES) <= set(generated_code_names())
    assert set(inherited_attribute_names()) == torch_names.MODULE_ATTRIBUTES
    # the Keras module defines exactly its helper layers, and the set names them all
    template = (Path(netspec_keras.__file__).parent / "templates" / "module.py.j2").read_text()
    assert set(re.findall(r"^class (\w+)\(", template, re.M)) == set(keras_names.HELPER_LAYERS)
    spec = "name: s\ninput: [4]\nlayers: [{name: NAME, type: linear, out_features: 3}]\n"
    for name, what in (("LocalResponseNorm", "a helper layer of the Keras code"), ("keras", "the keras package"),
                       ("training", "an attribute the generated torch class inherits from torch.nn.Module")):
        with pytest.raises(SpecError) as caught:
            check_file(write_spec(spec.replace("NAME", name)))
        assert what in caught.value.problems[0].message, caught.value.problems[0].message


@pytest.mark.parametrize("name", ["torch", "keras"])
def test_each_backend_offers_the_whole_backend_protocol_without_its_framework(name):
    """The protocol's members, attributes included, are there on the plugin, which loads without its
    framework; the training switches a backend declares are netspec's own."""
    import typing

    from netspec.codegen.backend import Backend, get_backend
    from netspec.train import FAST_PATH_PARTS

    backend = get_backend(name)
    members = [m for m in dir(Backend) if not m.startswith("_")] + list(typing.get_type_hints(Backend))
    assert isinstance(backend, Backend)
    assert all(hasattr(backend, member) for member in members), [m for m in members if not hasattr(backend, m)]
    assert set(backend.training_switches) <= set(FAST_PATH_PARTS) and backend.version_packages
    assert backend.process() == (0, 1)  # not launched by torchrun
    assert backend.weights_written in backend.weights_read

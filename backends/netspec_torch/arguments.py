"""The spec's params that the generated network class takes as constructor arguments, as
torchvision's ``ResNet(num_classes=1000)``: ``Resnet50(num_classes=10)`` builds the same network
with another classifier.

A param qualifies only when changing it changes nothing the generated code fixes elsewhere: every
``${...}`` that names it is the whole value of an integer field of a top-level layer whose output
no other layer takes (the classifier), and names no other param that does not qualify. A width
used in the middle of the network fixes the next layer's input channels, so it stays a value.
"""

from __future__ import annotations

import keyword
from typing import Any

from netspec.analysis.checker import CheckedLayer, CheckedNet
from netspec.codegen.render import Symbol
from netspec.language.expressions import Expression
from netspec.layers.base import LOCAL_CODE_NAMES, generated_code_names


def constructor_params(net: CheckedNet) -> dict[str, int]:
    """Each qualifying param and its value (the argument's default)."""
    loaded = net.source.loaded
    taken = {name for cl in net.layers for name in cl.inputs}
    fields = {where for cl in net.layers if cl.name not in taken and "." not in cl.name
              for where in _integer_fields(cl, loaded).values()}
    params = net.spec.params or {}
    candidates = {name: value for name, value in params.items()
                  if type(value) is int and _free_name(name)}
    named = loaded.params_named()
    qualifying = {name for name in candidates if named.get(name) and all(
        w in fields and isinstance(loaded.expressions[w], Expression) for w in named[name])}
    changed = True
    while changed:  # an expression that also names a fixed param fixes the others it names
        changed = False
        for name in sorted(qualifying):
            for where in named[name]:
                if not _names(loaded.expressions[where]) <= qualifying:
                    qualifying.discard(name)
                    changed = True
                    break
    return {name: candidates[name] for name in params if name in qualifying}


def symbolic_fields(cl: CheckedLayer, net: CheckedNet, arguments: dict[str, int]) -> dict[str, Symbol]:
    """The layer's fields written as expressions of the constructor's arguments."""
    loaded = net.source.loaded
    symbols = {}
    for field_name, where in _integer_fields(cl, loaded).items():
        expression = loaded.expressions.get(where)
        if isinstance(expression, Expression) and expression.names and expression.names <= arguments.keys():
            symbols[field_name] = Symbol(expression.python())
    return symbols


def _integer_fields(cl: CheckedLayer, loaded) -> dict[str, Any]:
    """Where each of the layer's integer fields is written (only those a ${...} wrote)."""
    out = {}
    for field_name in type(cl.layer).model_fields:
        if field_name in ("name", "inputs", "type") or type(getattr(cl.layer, field_name)) is not int:
            continue
        where = loaded.locations.get((*cl.path, field_name))
        if where is not None and where in loaded.expressions:
            out[field_name] = where
    return out


def _names(written: Expression | str) -> frozenset[str]:
    return written.names if isinstance(written, Expression) else frozenset()


def _free_name(name: str) -> bool:
    """A name the generated __init__ can take as an argument without hiding what it uses."""
    return not (keyword.iskeyword(name) or name in generated_code_names() or name in LOCAL_CODE_NAMES
                or name.startswith("_"))

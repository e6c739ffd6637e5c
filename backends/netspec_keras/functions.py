"""One builder function per module definition, as keras-applications writes ``dense_block(x, blocks,
name)``: the stacking code calls it once per use, so DenseNet-121's 58 dense layers are one function
of a dozen lines instead of an unrolled graph.

What differs between the uses are the function's arguments (netspec.codegen.module_code finds them, as it
does for the torch backend's classes). Every layer inside is named after the use's scope
(``f"{name}.conv1"`` is ``features.denseblock1.denselayer1.conv1``), so the model's layers keep
the spec's names and weights convert by name exactly as from the unrolled graph.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from netspec.analysis.checker import CheckedLayer, CheckedNet
from netspec.codegen.module_code import (
    NO_DEFAULT,
    Arguments,
    DefinitionBuilder,
    Unexpressible,
    is_default,
    layer_values,
)
from netspec.codegen.render import Symbol, ident, module_name, py, wrap_call
from netspec.language.modules import Instance, ModuleDefinition
from netspec.layers.base import NETWORK_INPUT, spatial_rank
from netspec_keras.lowering import Lowering, lower

INDENT = 4
# a spec's names are letters, digits, '_', '.' and '-' (netspec.language.spec): safe inside an f-string
_SCOPED_NAME = re.compile(r"[A-Za-z0-9_.\-]*")


def assign(target: str, expr: str, indent: int) -> str:
    """``target = expr`` indented, a long call's arguments on lines of their own."""
    return " " * indent + f"{target} = {wrap_call(expr, indent, len(target) + 3)}"


def scoped(scope: str, suffix: str) -> str:
    """The Python expression for a layer name under a use's scope: ``f"{name}.conv1"``."""
    if not _SCOPED_NAME.fullmatch(suffix):
        raise ValueError(f"refusing to render {suffix!r} into a layer name")
    return f'f"{{{ident(scope)}}}.{suffix}"'


@dataclass
class KerasFunction:
    name: str
    definition: str
    inputs: list[str]  # the tensors it takes, as variables
    scope: str  # the argument its layers' names start with ("name")
    arguments: list[tuple[str, str]] = field(default_factory=list)  # (name, annotation), required ones first
    defaults: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # the body, indented
    returns: str = "x"

    @property
    def signature(self) -> str:
        arguments = [*self.inputs, f"{self.scope}: str"]
        arguments += [f"{ident(name)}: {kind}" + (f" = {py(self.defaults[name])}" if name in self.defaults else "")
                      for name, kind in self.arguments]
        return f"{self.name}({', '.join(arguments)})"


@dataclass
class Call:
    """How one use calls its function: the function and its arguments' values."""

    function: KerasFunction
    kwargs: dict[str, Any]

    def expr(self, inputs: list[str], name: str, kwargs: dict[str, Any] | None = None) -> str:
        """The call on ``inputs`` under the scope ``name`` (a Python expression); ``kwargs``
        overrides the values (with the caller's own arguments)."""
        values = self.kwargs if kwargs is None else kwargs
        given = [f"{key}={py(values[key])}" for key, _ in self.function.arguments
                 if not is_default(values[key], self.function.defaults.get(key, NO_DEFAULT))]
        return f"{self.function.name}({', '.join([*inputs, f'{self.function.scope}={name}', *given])})"


class FunctionBuilder(DefinitionBuilder[KerasFunction]):
    """Builds the builder functions of a spec's modules. ``statements(cl, lowering, layer, resolved,
    args, target, indent)`` renders one layer (with its lowering's layers before it and its
    activation after) as the lines of code that apply it."""

    def __init__(self, net: CheckedNet, statements, taken: set[str], shape_format) -> None:
        super().__init__(net)
        self.statements = statements
        self.shape_format = shape_format  # how a shape comment writes a shape (channels last)
        self.functions: list[KerasFunction] = []
        self.calls: dict[str, Call] = {}  # instance path -> how it is called
        self.lowerings: list[Lowering] = []  # every layer's, for the helpers and Permutes the module needs
        # no function may take a name the module binds, or an argument's (which would hide it); a
        # variable that would hide a function is renamed instead (`features_`)
        self.taken = set(taken)
        for definition in self.expansion.definitions.values():
            self.taken |= {*definition.params, *definition.inputs}

    def generated_name(self, definition: ModuleDefinition, number: int) -> str:
        return module_name(definition.name) + (f"_{number}" if number > 1 else "")

    def body(self, generated: KerasFunction) -> tuple:
        return tuple(generated.lines), generated.returns, tuple(generated.inputs)

    def register(self, generated: KerasFunction, instances: list[Instance], kwargs: list[dict[str, Any]]) -> None:
        self.functions.append(generated)
        for instance, values in zip(instances, kwargs, strict=True):
            self.calls[instance.path] = Call(generated, values)

    def symbolic(self, definition: ModuleDefinition, instances: list[Instance], name: str, *,
                 literal: bool = False) -> tuple[KerasFunction, list[dict[str, Any]]]:
        params = set(definition.params)
        scope = next(s for s in ("name", "scope", "prefix", "layer_name") if s not in params | set(definition.inputs))
        inputs = ["x"] if definition.inputs == [NETWORK_INPUT] else [ident(i) for i in definition.inputs]
        function = KerasFunction(name, definition.name, inputs, scope)
        arguments = Arguments(definition, instances, self.input_channels, literal=literal,
                              constants=self.net.source.loaded.data.get("params") or {})
        bound = {*params, scope, *inputs}  # what a variable must not hide, with the functions it may call

        def variable(local: str) -> str:
            # a sequential module's children are numbered (0, 1, ...): out0, out1
            name = local if local.isidentifier() and not keyword.iskeyword(local) else \
                "out" + re.sub(r"\W", "_", local)
            return ident(name) if name not in bound | self.taken else f"{ident(name)}_"

        renamed = dict(zip(definition.inputs, inputs, strict=True))
        previous = inputs[0]
        children = self.children(definition, instances)
        # a chain (each item takes the one before) is written on `x`, as keras-applications does
        chain = inputs == ["x"] and all(item.get("inputs") is None for _, item in children)
        for local, item in children:
            arguments.enter(item)
            present = [instance.present.get(local, instance.children is not None) for instance in instances]
            item_inputs = self.item_inputs(item, renamed, previous)
            if not any(present):
                renamed[local] = item_inputs[0]
                continue
            condition = None if all(present) else arguments.condition(item, present)
            members = [instance.members.get(local) for instance in instances]
            target = "x" if chain else variable(local)
            indent = INDENT * (2 if condition else 1)
            if "module" in item:
                lines = self._nested(item, members, instances, arguments, item_inputs, target, scope, indent, bound)
            else:
                lines = self._layer(item, members, instances, arguments, item_inputs, target, scope, indent,
                                    shape="" if condition else self._shape(members))
            if condition is not None:  # left out, the item passes its input on
                if target != item_inputs[0]:
                    function.lines.append(assign(target, item_inputs[0], INDENT))
                function.lines.append(" " * INDENT + f"if {condition}:")
            function.lines += lines
            renamed[local] = previous = target
        function.returns = previous
        function.arguments, function.defaults = arguments.signature()
        return function, arguments.values()

    def _suffix(self, members: list[str | None], instances: list[Instance]) -> str:
        """The item's name under its use's scope, which must be the same in every use."""
        suffixes: set[str | None] = {member[len(instance.path) + 1:] if member.startswith(instance.path + ".")
                                     else None for member, instance in zip(members, instances, strict=True)
                                     if member is not None}
        if len(suffixes) != 1 or None in suffixes:
            raise Unexpressible("the item is named differently under its uses' scopes")
        return str(suffixes.pop())

    def _layer(self, item: dict, members: list[str | None], instances: list[Instance], arguments: Arguments,
               inputs: list[str], target: str, scope: str, indent: int, shape: str) -> list[str]:
        positions = [i for i, m in enumerate(members) if m is not None]
        checked = [self.by_name[m] for m in members if m is not None]
        first = checked[0]
        suffix = self._suffix(members, instances)

        def naming(extra: str) -> str:
            return scoped(scope, suffix + extra)

        lowerings = [lower(cl, naming) for cl in checked]
        lowering = lowerings[0]
        # Keras infers the channels a layer receives, and the lowering has written its padding
        inferred = {f"r.{key}" for key in (*first.layer.input_channel_keys, "padding")}
        values = [{key: value for key, value in layer_values(cl, _symmetric_padding).items() if key not in inferred}
                  for cl in checked]
        symbolic = arguments.symbolize(item, values, positions, target, set())
        pad = symbolic["pad"]
        if isinstance(pad, Symbol) and first.layer.pad_value == 0:
            # the spec wrote the padding as an expression of the module's params (${(kernel - 1) // 2}):
            # so is the padding layer, the same on every side, as the op's in torch
            if any(each.without_zero_padding() != lowering.without_zero_padding() for each in lowerings):
                raise Unexpressible("the layer lowers to different Keras layers in different uses")
            lowering = dataclasses.replace(lowering, before=[
                f"keras.layers.ZeroPadding{spatial_rank(first.input_shape)}D({py(pad)}, name={naming('_pad')})",
                *lowering.without_zero_padding()[0]])
        elif any((each.before, each.macro_values, each.helpers, each.permutes) !=
                 (lowering.before, lowering.macro_values, lowering.helpers, lowering.permutes) for each in lowerings):
            raise Unexpressible("the layer lowers to different Keras layers in different uses")
        self.lowerings.append(lowering)
        layer = type(first.layer).model_construct(**{**dict(first.layer), **symbolic["l"], "name": Symbol(naming(""))})
        args = inputs[0] if first.layer.arity == (1, 1) else f"[{', '.join(inputs)}]"
        lines = self.statements(first, lowering, layer, symbolic["r"], args, target, indent, shape)
        arguments.commit()
        return lines

    def _shape(self, members: list[str | None]) -> str:
        """The item's output shape for its comment, or nothing where the uses differ."""
        shape = self.shape(members, self.shape_format)
        return "" if shape == "varies" else shape

    def _nested(self, item: dict, members: list[str | None], instances: list[Instance], arguments: Arguments,
                inputs: list[str], target: str, scope: str, indent: int, bound: set[str]) -> list[str]:
        name = scoped(scope, self._suffix(members, instances))
        groups: list[list[tuple[str, Call]] | None] = []
        calls: list[Call | None] = []
        for member in members:
            group = [i for i in self.expansion.instances if member is not None and i.group == member]
            groups.append([(i.path.rsplit(".", 1)[-1], self.calls[i.path]) for i in group] if group else None)
            calls.append(self.calls[member] if member is not None and not group else None)
        present_groups = [g for g, m in zip(groups, members, strict=True) if m is not None and g is not None]
        if present_groups:  # a repeated use: its repetitions' calls, written out the same for every use
            if len(present_groups) != len([m for m in members if m is not None]):
                raise Unexpressible("a use is repeated in some uses only")
            texts = {tuple(repeated(target, inputs, group, name, indent, bound)) for group in present_groups}
            if len(texts) > 1:
                raise Unexpressible("a repeated use inside a module differs between uses")
            return list(texts.pop())
        present = [c for c in calls if c is not None]
        if len({id(c.function) for c in present}) > 1:
            raise Unexpressible("a nested module is built by different functions in different uses")
        function = present[0].function
        values = [{f"kw.{key}": c.kwargs[key] for key, _ in function.arguments} for c in present]
        positions = [i for i, c in enumerate(calls) if c is not None]
        symbolic = arguments.symbolize(item, values, positions, target, set())
        expr = present[0].expr(inputs, name, symbolic["kw"])
        arguments.commit()
        return [assign(target, expr, indent)]


def repeated(target: str, inputs: list[str], group: list[tuple[str, Call]], scope: str, indent: int,
             bound: set[str]) -> list[str]:
    """The calls of a repeated use, each on the one before: a loop over a run of repetitions that
    differ only in the number of their name (``denselayer1`` ... ``denselayer6``), one call
    otherwise. ``scope`` is the use's name, as a Python expression."""
    pad = " " * indent
    index = next(n for n in ("n", "i", "j", "index") if n not in bound and n != target)
    runs: list[list[tuple[str, Call]]] = []
    for suffix, call in group:
        last = runs[-1][-1] if runs else None
        if last is not None and _counts_on(last[0], suffix) and last[1].function is call.function \
                and last[1].kwargs == call.kwargs:
            runs[-1].append((suffix, call))
        else:
            runs.append([(suffix, call)])
    lines: list[str] = []
    current = inputs
    for run in runs:
        if len(run) < 3:  # a loop reads no better than two calls
            for suffix, call in run:
                lines.append(assign(target, call.expr(current, _under(scope, suffix)), indent))
                current = [target]
            continue
        stem, first = _numbered(run[0][0])
        if current != [target]:
            lines.append(assign(target, current[0], indent))
            current = [target]
        loop_scope = _under(scope, f"{stem}{{{index}}}")
        lines.append(pad + f"for {index} in range({first}, {first + len(run)}):")
        lines.append(assign(target, run[0][1].expr([target], loop_scope), indent + INDENT))
    return lines


def _under(scope: str, suffix: str) -> str:
    """A scope (a Python string literal, or an f-string) with ``.suffix`` appended; ``suffix`` may
    hold a loop variable in braces (``denselayer{n}``)."""
    if not _SCOPED_NAME.fullmatch(re.sub(r"\{\w+\}", "", suffix)):
        raise ValueError(f"refusing to render {suffix!r} into a layer name")
    if scope.startswith('f"'):
        return f'{scope[:-1]}.{suffix}"'
    return ("f" if "{" in suffix else "") + f'"{scope[1:-1]}.{suffix}"'


def _numbered(suffix: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*?)(\d+)", suffix)
    assert match is not None
    return match.group(1), int(match.group(2))


def _counts_on(previous: str, suffix: str) -> bool:
    """Whether ``suffix`` is ``previous`` with its number one higher (denselayer1, denselayer2)."""
    a = re.fullmatch(r"(.*?)(\d+)", previous)
    b = re.fullmatch(r"(.*?)(\d+)", suffix)
    return bool(a and b and a.group(1) == b.group(1) and int(b.group(2)) == int(a.group(2)) + 1
                and str(int(a.group(2))) == a.group(2) and str(int(b.group(2))) == b.group(2))


def _symmetric_padding(cl: CheckedLayer) -> tuple[tuple[int, ...] | None, None]:
    """A layer's padding per spatial axis where it is the same on both sides of each (what a
    padding expression of the module's params gives), else None: Keras' lowering writes the rest."""
    pads = cl.resolved.get("padding")
    if not isinstance(pads, tuple) or any(pads[i] != pads[i + 1] for i in range(0, len(pads), 2)):
        return None, None
    return pads[::2], None

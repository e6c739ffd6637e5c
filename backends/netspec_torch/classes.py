"""One generated nn.Module class per module definition, as torchvision writes a class per block.

What differs between a definition's uses becomes the class's constructor arguments
(netspec.codegen.module_code says how). A layer that some uses leave out (``when: ${downsample}``) is
built only when its condition holds, and ``forward()`` passes its input on otherwise, as
torchvision's ``if self.downsample is not None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netspec.analysis.checker import CheckedNet
from netspec.codegen.module_code import (
    NO_DEFAULT,
    Arguments,
    DefinitionBuilder,
    Unexpressible,
    is_default,
    layer_values,
)
from netspec.codegen.render import class_name, ident, module_name, py
from netspec.errors import Problem, SpecError
from netspec.language.expressions import Expression
from netspec.language.modules import Instance, ModuleDefinition
from netspec.layers.base import NETWORK_INPUT, channels_of, generated_code_names
from netspec_torch.imports import need

# the generated classes' own argument for the channels a nested module's instance receives
_IN_CHANNELS_ARGUMENT = "kw.in_channels"


@dataclass
class ClassAttribute:
    name: str
    constructor: str
    condition: str | None = None  # built only when this holds (else None)


@dataclass
class ClassStep:
    target: str
    expr: str
    shape: str
    optional_input: str | None = None  # a left-out-able layer: its input, passed on when absent
    guard: str | None = None  # what says it is present (default: its attribute is not None)

    @property
    def presence(self) -> str:
        return self.guard or f"self.{self.target} is not None"


@dataclass
class GeneratedClass:
    name: str
    definition: str
    sequential: bool
    arguments: list[tuple[str, str]] = field(default_factory=list)  # (name, annotation), required ones first
    defaults: dict[str, Any] = field(default_factory=dict)  # an argument's default: the module param's
    attributes: list[ClassAttribute] = field(default_factory=list)
    children: list[str] = field(default_factory=list)  # a sequential class's modules, in order
    steps: list[ClassStep] = field(default_factory=list)
    returns: str = "x"
    inputs: list[str] = field(default_factory=lambda: ["x"])  # forward()'s parameters

    @property
    def forward_signature(self) -> str:
        return "forward(" + ", ".join(["self", *(f"{ident(name)}: torch.Tensor" for name in self.inputs)]) + ")"

    @property
    def init_signature(self) -> str:
        arguments = [f"{ident(name)}: {kind}" + (f" = {py(self.defaults[name])}" if name in self.defaults else "")
                     for name, kind in self.arguments]
        return "__init__(" + ", ".join(["self", *arguments]) + ")"


@dataclass
class Construction:
    """How one use builds its instance: the class and its arguments' values."""

    cls: GeneratedClass
    kwargs: dict[str, Any]

    def expr(self) -> str:
        args = ", ".join(f"{name}={py(self.kwargs[name])}" for name, _ in self.cls.arguments
                         if not is_default(self.kwargs[name], self.cls.defaults.get(name, NO_DEFAULT)))
        return f"{self.cls.name}({args})"


class ClassBuilder(DefinitionBuilder[GeneratedClass]):
    """Builds the classes of a spec's modules, inner definitions first. ``render_layer(cl, layer,
    resolved, pad)`` renders one layer's constructor through the backend's macro; ``layer_call``
    renders forward()'s expression for a layer; ``pads(cl)`` splits its padding."""

    def __init__(self, net: CheckedNet, render_layer, layer_call, pads, called_as_module, not_a_sequence_child,
                 is_expression) -> None:
        super().__init__(net)
        self.render_layer = render_layer
        self.layer_call = layer_call
        self.pads = pads
        self.called_as_module = called_as_module  # (cl) -> whether forward() applies it as self.name(x)
        self.not_a_sequence_child = not_a_sequence_child  # (cl, hint) -> the SpecError when it cannot be
        self.is_expression = is_expression  # (cl) -> whether forward() writes it with no module (a merge)
        self.classes: list[GeneratedClass] = []
        self.constructions: dict[str, Construction] = {}  # instance path -> how it is built
        # class names in use: the network's own class and every name the generated module binds
        self.taken = {net.spec.class_name or class_name(net.spec.name), module_name(net.spec.name),
                      *generated_code_names()}
        self._item_names: set[str] = set()  # the local names in the class under construction

    def generated_name(self, definition: ModuleDefinition, number: int) -> str:
        network = self.net.spec.class_name or class_name(self.net.spec.name)
        if class_name(definition.name) == network:  # renaming either silently would surprise
            named_by = f"class_name: {network}" if self.net.spec.class_name \
                else f"from the spec's name, '{self.net.spec.name}'"
            raise SpecError([Problem(f"module '{definition.name}' would be the class {network}, which is the "
                                     f"network's own class ({named_by})", definition.location,
                                     hint=f"rename the module, e.g. '{definition.name}_block'")])
        return class_name(definition.name) + (str(number) if number > 1 else "")

    def body(self, generated: GeneratedClass) -> tuple:
        return (tuple((a.name, a.constructor, a.condition) for a in generated.attributes), tuple(generated.children),
                tuple((s.target, s.expr) for s in generated.steps))

    def register(self, generated: GeneratedClass, instances: list[Instance], kwargs: list[dict[str, Any]]) -> None:
        self.classes.append(generated)
        for instance, values in zip(instances, kwargs, strict=True):
            self.constructions[instance.path] = Construction(generated, values)

    def symbolic(self, definition: ModuleDefinition, instances: list[Instance], name: str, *,
                 literal: bool = False) -> tuple[GeneratedClass, list[dict[str, Any]]]:
        """The class for ``instances`` with what differs between them as arguments (``literal``:
        one instance's values written out, nothing may differ)."""
        cls = GeneratedClass(name, definition.name, definition.sequential)
        arguments = Arguments(definition, instances, self.input_channels, literal=literal,
                              constants=self.net.source.loaded.data.get("params") or {})
        # forward()'s parameters: x, or the module's declared inputs by their names
        if definition.inputs != [NETWORK_INPUT]:
            cls.inputs = list(definition.inputs)
        renamed = {name: variable for name, variable in zip(definition.inputs, cls.inputs, strict=True)}
        previous = cls.inputs[0]
        # each variable's channel count, as an expression of the arguments
        channels: dict[str, Expression | None] = {previous: Expression.name(arguments.channel_param() or "in_channels")}
        children = self.children(definition, instances)
        self._item_names = {local for local, _ in children}
        for local, item in children:
            arguments.enter(item)
            present = [instance.present.get(local, instance.children is not None) for instance in instances]
            inputs = self.item_inputs(item, renamed, previous)
            if not any(present):
                renamed[local] = inputs[0]
                continue
            condition = None
            if not all(present):
                condition = arguments.condition(item, present)
            members = [instance.members.get(local) for instance in instances]
            arguments.channel_hint = channels.get(inputs[0])
            channels[local] = self._channels_out(item, members, inputs, channels, arguments)
            if "module" in item:
                constructor = self._nested(item, members, arguments)
            else:
                constructor = self._layer(item, members, arguments, cls, inputs, local, condition)
            if constructor is None:  # a merge: an expression in forward()
                renamed[local] = previous = local
                continue
            # a layer some uses leave out has no one shape: its absent uses pass their input on
            shape = self.shape(members) if condition is None else "varies"
            if definition.sequential:
                modules = constructor if isinstance(constructor, list) else [constructor]
                if condition is not None:  # as torchvision builds a list of layers: `if expand_ratio != 1:`
                    modules = [f"*([{', '.join(modules)}] if {condition} else [])"]
                cls.children += modules
            else:
                cls.attributes.append(ClassAttribute(local, constructor, condition))
                if "module" in item:
                    cls.steps.append(ClassStep(local, f"self.{local}({', '.join(inputs)})", shape,
                                               inputs[0] if condition else None))
            renamed[local] = previous = local
        cls.returns = previous if not definition.sequential else cls.inputs[0]
        cls.arguments, cls.defaults = arguments.signature()
        return cls, arguments.values()

    def _channels_out(self, item: dict, members: list[str | None], inputs: list[str],
                      channels: dict[str, Expression | None], arguments: Arguments) -> Expression | None:
        """The item's output channels as an expression of the class's arguments, when one holds for
        every use: what the spec wrote (out_channels: ${planes * 4}), its input's (batch norm,
        activations, add), or the sum of its inputs' (concat)."""
        positions = [i for i, m in enumerate(members) if m is not None]
        actual = [channels_of(self.output_of(m)) for m in members if m is not None]
        candidates = []
        for key in ("out_channels", "out_features"):
            written = arguments.expression(item.get(key))
            if written is not None:
                candidates.append(written)
        if "module" in item:  # a nested use: one of the values it passes on may be its width (out: ${inp * t})
            for value in (item.get("params") or {}).values():
                written = arguments.expression(value)
                if written is not None:
                    candidates.append(written)
        known = [known for name in inputs if (known := channels.get(name)) is not None]
        if known and len(known) == len(inputs):
            candidates.append(known[0])
            if len(known) > 1:
                candidates.append(Expression.join("+", known))
        for candidate in candidates:
            if arguments.evaluates_to(candidate, positions, actual):
                return candidate
        return None

    def _layer(self, item: dict, members: list[str | None], arguments: Arguments, cls: GeneratedClass,
               inputs: list[str], local: str, condition: str | None):
        checked = [self.by_name[m] for m in members if m is not None]
        first = checked[0]
        if self.is_expression(first):  # a merge, or a chunk: no module of its own
            expr = self.layer_call(first, inputs, merge=True)
            if condition is None:
                cls.steps.append(ClassStep(local, expr, self.shape(members)))
                return None
            # kept as a flag, as torchvision's `self.use_res_connect = stride == 1 and inp == oup`
            flag = f"use_{local}"
            if cls.sequential or any(a.name == flag for a in cls.attributes) or flag in self._item_names:
                raise Unexpressible("no attribute name free for the merge's condition")
            cls.attributes.append(ClassAttribute(flag, condition))
            cls.steps.append(ClassStep(local, expr, "varies", inputs[0], guard=f"self.{flag}"))
            return None
        values = [layer_values(cl, self.pads) for cl in checked]
        channel_keys = {f"r.{key}" for key in first.layer.input_channel_keys}
        symbolic = arguments.symbolize(item, values, [i for i, m in enumerate(members) if m is not None], local,
                                       channel_keys)
        layer = type(first.layer).model_construct(**{**dict(first.layer), **symbolic["l"]})
        constructor = self.render_layer(first, layer, symbolic["r"], symbolic["pad"])
        arguments.commit()
        pre_pad = symbolic["pre_pad"]
        if cls.sequential:
            if not self.called_as_module(first):
                raise self.not_a_sequence_child(first, "leave out 'sequential: true' from the module around it")
            if pre_pad is not None:
                raise SpecError([Problem("this layer's padding differs between its sides here ('same' at this size), "
                                         "which a sequential module cannot hold as a separate padding module",
                                         first.location, layer=first.name,
                                         hint="give explicit padding, or leave out 'sequential: true'")])
            modules = [constructor]
            activation = getattr(first.layer, "activation", None)
            if activation:
                modules.append(self.layer_call(first, [], activation_module=True))
            return modules
        expr = self.layer_call(first, [inputs[0]], local=local, pre_pad=pre_pad)
        shape = self.shape(members) if condition is None else "varies"
        cls.steps.append(ClassStep(local, expr, shape, inputs[0] if condition else None))
        return constructor

    def _nested(self, item: dict, members: list[str | None], arguments: Arguments) -> str:
        # per use: its Construction, a tuple of (name, Construction) for a repeated use, or None (absent)
        constructions: list[Any] = []
        for member in members:
            if member is None:
                constructions.append(None)
                continue
            group = [i for i in self.expansion.instances if i.group == member]
            if group:  # a repeated use: nn.Sequential of its repetitions, by their names
                constructions.append(tuple((i.path.rsplit(".", 1)[-1], self.constructions[i.path]) for i in group))
            else:
                constructions.append(self.constructions[member])
        present = [c for c in constructions if c is not None]
        if any(isinstance(c, tuple) for c in present):
            texts = {sequential_of([(name, c.expr()) for name, c in group]) for group in present}
            if len(texts) > 1:
                raise Unexpressible("a repeated use inside a module differs between uses")
            return texts.pop()
        classes = {c.cls.name for c in present}
        if len(classes) > 1:
            raise Unexpressible("a nested module is built by different classes in different uses")
        cls = present[0].cls
        values = [{f"kw.{k}": c.kwargs[k] for k, _ in cls.arguments} for c in present]
        positions = [i for i, c in enumerate(constructions) if c is not None]
        symbolic = arguments.symbolize(item, values, positions, item["name"], {_IN_CHANNELS_ARGUMENT})
        args = ", ".join(f"{k}={py(symbolic['kw'][k])}" for k, _ in cls.arguments
                         if not is_default(symbolic["kw"][k], cls.defaults.get(k, NO_DEFAULT)))
        arguments.commit()
        return f"{cls.name}({args})"


def numbered(children: list[tuple[str, Any]]) -> bool:
    """Whether the children are named 0, 1, 2, ... as nn.Sequential names them itself."""
    return all(name == str(number) for number, (name, _) in enumerate(children))


def sequential_of(children: list[tuple[str, str]]) -> str:
    """``nn.Sequential`` of a repeated use's constructions: numbered, or named as the spec's
    ``names:`` pattern says (``OrderedDict(denselayer1=...)``, as torchvision's DenseNet)."""
    if numbered(children):
        return "nn.Sequential(" + ", ".join(expr for _, expr in children) + ")"
    need("OrderedDict")
    if all(name.isidentifier() for name, _ in children):
        return "nn.Sequential(OrderedDict(" + ", ".join(f"{name}={expr}" for name, expr in children) + "))"
    # names a keyword argument cannot carry (RegNet's block1-0)
    return "nn.Sequential(OrderedDict([" + ", ".join(f"({py(name)}, {expr})" for name, expr in children) + "]))"



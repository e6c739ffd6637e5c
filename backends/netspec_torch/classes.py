"""One generated nn.Module class per module definition, as torchvision writes a class per block.

A definition is used several times with different values (ResNet's first block of a stage has a
stride and a downsample path, the others do not). What differs between the uses becomes the
class's constructor arguments, named after what it is: a param of the module (``planes``), an
expression the spec wrote (``planes * 4``), or the channels the use receives (``in_channels``);
anything else gets a descriptive name (``conv1_padding``). A layer that some uses leave out
(``when: ${downsample}``) is built only when its condition holds, and ``forward()`` passes its
input on otherwise, as torchvision's ``if self.downsample is not None``.

When the differences cannot be written as arguments (a use that changes ``bias``), the uses are
split into a class per distinct body (``Block``, ``Block2``): still exact, only less compact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from netspec.checker import CheckedLayer, CheckedNet
from netspec.errors import Problem, SpecError
from netspec.expressions import Expression, ExpressionError
from netspec.layers import fmt_shape
from netspec.layers.base import NETWORK_INPUT, generated_code_names
from netspec.modules import Instance, ModuleDefinition
from netspec.render import Symbol, class_name, ident, module_name, py
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
                         if not _is_default(self.kwargs[name], self.cls.defaults.get(name, _NO_DEFAULT)))
        return f"{self.cls.name}({args})"


_NO_DEFAULT = object()


def _is_default(value: Any, default: Any) -> bool:
    """A value a call may leave out: its argument's default, of the same type (True is not 1)."""
    return default is not _NO_DEFAULT and type(value) is type(default) and value == default


class _Unexpressible(Exception):
    """The uses differ in a way a constructor argument cannot carry."""


class ClassBuilder:
    """Builds the classes of a spec's modules, inner definitions first. ``render_layer(cl, layer,
    resolved, pad)`` renders one layer's constructor through the backend's macro; ``layer_call``
    renders forward()'s expression for a layer; ``pads(cl)`` splits its padding."""

    def __init__(self, net: CheckedNet, render_layer, layer_call, pads) -> None:
        self.net = net
        self.expansion = net.source.loaded.modules
        self.render_layer = render_layer
        self.layer_call = layer_call
        self.pads = pads
        self.by_name = {cl.name: cl for cl in net.layers}
        self.classes: list[GeneratedClass] = []
        self.constructions: dict[str, Construction] = {}  # instance path -> how it is built
        # class names in use: the network's own class and every name the generated module binds
        self.taken: set[str] = {net.spec.class_name or class_name(net.spec.name), module_name(net.spec.name),
                                *generated_code_names()}
        self._item_names: set[str] = set()  # the local names in the class under construction

    def build(self) -> None:
        instances: dict[str, list[Instance]] = {}
        for instance in self.expansion.instances:
            instances.setdefault(instance.definition, []).append(instance)
        for definition in self._inner_first():
            if instances.get(definition.name):
                self._build_definition(definition, instances[definition.name])

    def _inner_first(self) -> list[ModuleDefinition]:
        ordered: list[ModuleDefinition] = []
        seen: set[str] = set()

        def visit(definition: ModuleDefinition) -> None:
            if definition.name in seen:
                return
            seen.add(definition.name)
            for item in definition.layers:
                inner = item.get("module") if isinstance(item, dict) else None
                if isinstance(inner, str) and inner in self.expansion.definitions:
                    visit(self.expansion.definitions[inner])
            ordered.append(definition)

        for definition in self.expansion.definitions.values():
            visit(definition)
        return ordered

    # --- one definition ---------------------------------------------------------------------------

    def _build_definition(self, definition: ModuleDefinition, instances: list[Instance]) -> None:
        network = self.net.spec.class_name or class_name(self.net.spec.name)
        if class_name(definition.name) == network:  # renaming either silently would surprise
            named_by = f"class_name: {network}" if self.net.spec.class_name \
                else f"from the spec's name, '{self.net.spec.name}'"
            raise SpecError([Problem(f"module '{definition.name}' would be the class {network}, which is the "
                                     f"network's own class ({named_by})", definition.location,
                                     hint=f"rename the module, e.g. '{definition.name}_block'")])
        try:
            name = self._unique(class_name(definition.name), reserve=False)
            cls, kwargs = self._symbolic(definition, instances, name)
            self.taken.add(name)
        except _Unexpressible:
            for number, members in enumerate(self._clusters(definition, instances), start=1):
                name = self._unique(class_name(definition.name) + (str(number) if number > 1 else ""))
                try:  # what still differs inside a cluster is an argument
                    cls, kwargs = self._symbolic(definition, members, name)
                except _Unexpressible:
                    cls, kwargs = self._symbolic(definition, members, name, literal=True)
                self._register(cls, members, kwargs)
            return
        self._register(cls, instances, kwargs)

    def _clusters(self, definition: ModuleDefinition, instances: list[Instance]) -> list[list[Instance]]:
        """The uses in groups that one class can build each: the uses with the same body (every
        value written out) start together, and a group joins an earlier one when a class with
        arguments builds both (the uses of a block with bias and those without, whatever widths)."""
        bodies: dict[str, list[Instance]] = {}
        for instance in instances:
            probe = self._symbolic(definition, [instance], "Probe", literal=True)[0]
            bodies.setdefault(repr(_class_signature(probe)), []).append(instance)
        clusters: list[list[Instance]] = []
        for members in bodies.values():
            for cluster in clusters:
                try:
                    self._symbolic(definition, cluster + members, "Probe")
                except _Unexpressible:
                    continue
                cluster.extend(members)
                break
            else:
                clusters.append(list(members))
        return clusters

    def _register(self, cls: GeneratedClass, instances: list[Instance], kwargs: list[dict[str, Any]]) -> None:
        self.classes.append(cls)
        for instance, values in zip(instances, kwargs, strict=True):
            self.constructions[instance.path] = Construction(cls, values)

    def _unique(self, name: str, *, reserve: bool = True) -> str:
        candidate, number = name, 2
        while candidate in self.taken:
            candidate, number = f"{name}{number}", number + 1
        if reserve:
            self.taken.add(candidate)
        return candidate

    def _symbolic(self, definition: ModuleDefinition, instances: list[Instance], name: str, *,
                  literal: bool = False) -> tuple[GeneratedClass, list[dict[str, Any]]]:
        """The class for ``instances`` with what differs between them as arguments (``literal``:
        one instance's values written out, nothing may differ)."""
        cls = GeneratedClass(name, definition.name, definition.sequential)
        arguments = _Arguments(definition, instances, self._input_channels, literal=literal,
                               constants=self.net.source.loaded.data.get("params") or {})
        # forward()'s parameters: x, or the module's declared inputs by their names
        if definition.inputs != [NETWORK_INPUT]:
            cls.inputs = list(definition.inputs)
        renamed = {name: variable for name, variable in zip(definition.inputs, cls.inputs, strict=True)}
        previous = cls.inputs[0]
        # each variable's channel count, as an expression of the arguments
        channels: dict[str, Expression | None] = {previous: Expression.name(arguments.channel_param() or "in_channels")}
        children = self._children(definition, instances)
        self._item_names = {local for local, _ in children}
        for local, item in children:
            present = [instance.present.get(local, instance.children is not None) for instance in instances]
            inputs = self._item_inputs(item, renamed, previous)
            if not any(present):
                renamed[local] = inputs[0]
                continue
            condition = None
            if not all(present):
                condition = arguments.condition(item, present)
            members = [self._member(instance, local) for instance in instances]
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
            shape = self._shape(members) if condition is None else "varies"
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

    @staticmethod
    def _children(definition: ModuleDefinition, instances: list[Instance]) -> list[tuple[str, Any]]:
        """The class body's items with their local names: the definition's, or for a sequential
        module with inline uses, the children those uses expanded to (the same for every use)."""
        if instances[0].children is None:
            return [(item.get("name"), item) for item in definition.layers]
        if any([key for key, _ in i.children or []] != [key for key, _ in instances[0].children] for i in instances):
            raise _Unexpressible("the uses expand to different children")
        return instances[0].children

    def _channels_out(self, item: dict, members: list[str | None], inputs: list[str],
                      channels: dict[str, Expression | None], arguments: _Arguments) -> Expression | None:
        """The item's output channels as an expression of the class's arguments, when one holds for
        every use: what the spec wrote (out_channels: ${planes * 4}), its input's (batch norm,
        activations, add), or the sum of its inputs' (concat)."""
        positions = [i for i, m in enumerate(members) if m is not None]
        actual = [self._output_of(m)[0] for m in members if m is not None]
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

    def _member(self, instance: Instance, local: str) -> str | None:
        return instance.members.get(local)

    def _shape(self, members: list[str | None]) -> str:
        shapes = {fmt_shape(self._output_of(m)) for m in members if m is not None}
        return shapes.pop() if len(shapes) == 1 else "varies"

    def _output_of(self, scoped: str):
        if scoped in self.by_name:
            return self.by_name[scoped].output_shape
        last = [i for i in self.expansion.instances if i.path == scoped or i.group == scoped][-1]
        return self.by_name[last.output].output_shape if last.output in self.by_name else self.net.input_shape

    def _input_channels(self, instance: Instance) -> int:
        if instance.input == NETWORK_INPUT:
            return self.net.input_shape[0]
        return self.by_name[instance.input].output_shape[0]

    @staticmethod
    def _item_inputs(item: dict, renamed: dict[str, str], previous: str) -> list[str]:
        given = item.get("inputs")
        if given is None:
            return [previous]
        names = [given] if isinstance(given, str) else list(given)
        return [renamed.get(name, name) for name in names]

    def _layer(self, item: dict, members: list[str | None], arguments: _Arguments, cls: GeneratedClass,
               inputs: list[str], local: str, condition: str | None):
        checked = [self.by_name[m] for m in members if m is not None]
        first = checked[0]
        if first.layer.arity != (1, 1):  # a merge
            expr = self.layer_call(first, inputs, merge=True)
            if condition is None:
                cls.steps.append(ClassStep(local, expr, self._shape(members)))
                return None
            # kept as a flag, as torchvision's `self.use_res_connect = stride == 1 and inp == oup`
            flag = f"use_{local}"
            if cls.sequential or any(a.name == flag for a in cls.attributes) or flag in self._item_names:
                raise _Unexpressible("no attribute name free for the merge's condition")
            cls.attributes.append(ClassAttribute(flag, condition))
            cls.steps.append(ClassStep(local, expr, "varies", inputs[0], guard=f"self.{flag}"))
            return None
        values = [_layer_values(cl, self.pads) for cl in checked]
        channel_keys = {f"r.{key}" for key in first.layer.input_channel_keys}
        symbolic = arguments.symbolize(item, values, [i for i, m in enumerate(members) if m is not None], local,
                                       channel_keys)
        layer = type(first.layer).model_construct(**{**dict(first.layer), **symbolic["l"]})
        constructor = self.render_layer(first, layer, symbolic["r"], symbolic["pad"])
        arguments.commit()
        pre_pad = symbolic["pre_pad"]
        if cls.sequential:
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
        shape = self._shape(members) if condition is None else "varies"
        cls.steps.append(ClassStep(local, expr, shape, inputs[0] if condition else None))
        return constructor

    def _nested(self, item: dict, members: list[str | None], arguments: _Arguments) -> str:
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
                raise _Unexpressible("a repeated use inside a module differs between uses")
            return texts.pop()
        classes = {c.cls.name for c in present}
        if len(classes) > 1:
            raise _Unexpressible("a nested module is built by different classes in different uses")
        cls = present[0].cls
        values = [{f"kw.{k}": c.kwargs[k] for k, _ in cls.arguments} for c in present]
        positions = [i for i, c in enumerate(constructions) if c is not None]
        symbolic = arguments.symbolize(item, values, positions, item["name"], {_IN_CHANNELS_ARGUMENT})
        args = ", ".join(f"{k}={py(symbolic['kw'][k])}" for k, _ in cls.arguments
                         if not _is_default(symbolic["kw"][k], cls.defaults.get(k, _NO_DEFAULT)))
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


def _layer_values(cl: CheckedLayer, pads) -> dict[str, Any]:
    op_padding, pre_pad = pads(cl)
    values = {f"l.{key}": value for key, value in dict(cl.layer).items() if key not in ("name", "type", "inputs")}
    values.update({f"r.{key}": value for key, value in cl.resolved.items()})
    values["pad"] = op_padding
    values["pre_pad"] = pre_pad
    return values


def _class_signature(cls: GeneratedClass) -> tuple:
    return (tuple((a.name, a.constructor, a.condition) for a in cls.attributes), tuple(cls.children),
            tuple((s.target, s.expr) for s in cls.steps))


def _comparable(value: Any) -> Any:
    """A per-axis value the same along every axis ((3, 3), or a 1-D layer's (3,)) compares equal
    to the int a param gives (torch takes either)."""
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        return value[0]
    return value


class _Arguments:
    """The constructor arguments of one class under construction, and each use's values."""

    def __init__(self, definition: ModuleDefinition, instances: list[Instance], input_channels, *,
                 literal: bool = False, constants: dict[str, Any] | None = None) -> None:
        self.definition = definition
        # the spec's own params: fixed for every use, so an expression over them is written with their values
        self.constants = {k: v for k, v in (constants or {}).items()
                          if k not in definition.params and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.literal = literal  # every value written out: a class per distinct body
        self.instances = instances
        self.channels = [input_channels(instance) for instance in instances]
        self.used: dict[str, str] = {}  # argument name -> annotation
        self.generic: dict[str, list[Any]] = {}  # descriptive arguments and each use's value
        self.pending: list[tuple[Symbol, list[tuple[str, Any]], list[Any] | None]] = []
        self.channel_hint: Expression | None = None  # the current item's input channels, as an expression
        self.channel_keys: set[str] = set()  # the current item's values that are those channels

    def _scope(self, position: int) -> dict[str, Any]:
        return {**self.instances[position].params, "in_channels": self.channels[position]}

    def evaluates_to(self, expression: Expression, positions: list[int], wanted: list[Any]) -> bool:
        if not expression.names <= {*self.definition.params, "in_channels"}:
            return False
        try:
            return [_evaluate(expression, self._scope(i)) for i in positions] == [_comparable(w) for w in wanted]
        except ExpressionError:  # a param that is no number in some use: not an expression of these values
            return False

    def _needs(self, expression: Expression, position: int) -> list[tuple[str, Any]]:
        return [(name, self._scope(position)[name]) for name in sorted(expression.names)]

    def commit(self) -> None:
        """Make arguments of the symbols the last rendering printed (a value the backend's macro
        does not print needs no argument)."""
        for symbol, names, generic in self.pending:
            if symbol.rendered:
                for name, sample in names:
                    self._use(name, sample)
                if generic is not None:
                    self.generic[symbol.text] = generic
        self.pending = []

    def channel_param(self) -> str | None:
        """A param that is the channels every use receives (MobileNetV2's ``inp``): it then names
        them, rather than an ``in_channels`` argument that would always be passed the same value.
        Only where the uses receive different channels, so that a coincidence does not count."""
        if self.literal or len(set(self.channels)) < 2:
            return None
        for name in self.definition.params:
            values = [instance.params.get(name) for instance in self.instances]
            if all(type(value) is int for value in values) and values == self.channels:
                return name
        return None

    def signature(self) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        """The constructor's arguments, those without a default first (as Python needs), and the
        defaults: a module param's own, where it is a plain value."""
        defaults = {name: value for name, value in self.definition.params.items()
                    if name in self.used and isinstance(value, (bool, int, float)) and not self.literal}
        order = ["in_channels", *self.definition.params, *self.generic]
        required = [name for name in order if name in self.used and name not in defaults]
        optional = [name for name in order if name in defaults]
        return [(name, self.used[name]) for name in required + optional], defaults

    def values(self) -> list[dict[str, Any]]:
        out = []
        for i, instance in enumerate(self.instances):
            row = {}
            for name in self.used:
                if name == "in_channels":
                    row[name] = self.channels[i]
                elif name in self.generic:
                    row[name] = self.generic[name][i]
                else:
                    row[name] = instance.params[name]
            out.append(row)
        return out

    def _use(self, name: str, sample: Any) -> None:
        self.used.setdefault(name, _annotation(sample))

    def condition(self, item: dict, present: list[bool]) -> str:
        expression = self.expression(item.get("when"))
        if expression is None:
            raise _Unexpressible("a layer left out per use by a value that is not a param expression")
        if not expression.names <= set(self.definition.params):
            raise _Unexpressible("the condition uses values that are not the module's params")
        for name in expression.names:
            self._use(name, self.instances[0].params[name])
        return expression.python()

    def symbolize(self, item: dict, values: list[dict[str, Any]], positions: list[int], local: str,
                  channel_keys: set[str]) -> dict:
        """Each key's value, or a Symbol when the uses differ; grouped by prefix (l, r, kw, pad).
        ``channel_keys`` are the keys whose value is the channels the item receives."""
        self.channel_keys = channel_keys
        grouped: dict[str, Any] = {"l": {}, "r": {}, "kw": {}, "pad": None, "pre_pad": None}
        for key in values[0]:
            column = [row.get(key) for row in values]
            # a layer's flag or name (bias, ceil_mode, an activation) decides what its macro writes, so
            # it is never an argument: uses that differ in one get a class each
            flag = key.partition(".")[0] in ("l", "r") and any(isinstance(v, bool | str) for v in column)
            if all(v == column[0] for v in column) and (flag or not self._named(item, key)):
                value = column[0]
            elif flag:
                raise _Unexpressible(f"the uses differ in {key.partition('.')[2]}, which the layer's code branches on")
            else:
                value = self._symbol(item, key, column, positions, local)
            prefix, _, rest = key.partition(".")
            if rest:
                grouped[prefix][rest] = value
            else:
                grouped[key] = value
        if isinstance(grouped["pre_pad"], Symbol):
            raise _Unexpressible("padding on one side only differs between uses")
        return grouped

    def _named(self, item: dict, key: str) -> bool:
        """Whether a value the uses share is still better written as an argument: the spec wrote it
        as an expression of the module's params, or it is a channel count (so the class reads
        ``nn.BatchNorm2d(planes)`` as torchvision's do, not ``nn.BatchNorm2d(64)``)."""
        if self.literal:
            return False
        written = self._written(item, key)
        if written is not None:  # an expression of the module's params (not only of constants)
            return bool(written.names) and written.names <= set(self.definition.params)
        return key in self.channel_keys

    def _symbol(self, item: dict, key: str, column: list[Any], positions: list[int], local: str) -> Symbol | Any:
        instances = [self.instances[i] for i in positions]
        wanted = [_comparable(v) for v in column]
        hint = self.channel_hint if key in self.channel_keys else None
        if hint is not None and self.evaluates_to(hint, positions, wanted):
            return self._pending(Symbol(hint.python()), self._needs(hint, positions[0]))
        written = self._written(item, key)
        if written is not None and self.evaluates_to(written, positions, column):
            return self._pending(Symbol(written.python()), self._needs(written, positions[0]))
        if key == "pad":  # the same on every side: the spec's `padding: ${(kernel - 1) // 2}` as one int
            written = self.expression(item.get("padding"))
            sides = [v[0] if isinstance(v, tuple) and len(set(v)) == 1 else None for v in column]
            if written is not None and None not in sides and self.evaluates_to(written, positions, sides):
                return self._pending(Symbol(written.python()), self._needs(written, positions[0]))
        for name in self.definition.params:
            if [_comparable(instance.params[name]) for instance in instances] == wanted:
                return self._pending(Symbol(name), [(name, instances[0].params[name])])
        if [self.channels[i] for i in positions] == wanted:
            return self._pending(Symbol("in_channels"), [("in_channels", 0)])
        if all(v == column[0] for v in column):
            return column[0]  # a channel count that no argument gives: written out
        if len(positions) != len(self.instances):
            raise _Unexpressible("a value differs between the uses of a layer that some uses leave out")
        name = re.sub(r"[^A-Za-z0-9_]", "_", f"{local}_{key.partition('.')[2] or key}")
        return self._pending(Symbol(name), [(name, column[0])], column)

    def _pending(self, symbol: Symbol, names: list[tuple[str, Any]], generic: list[Any] | None = None) -> Symbol:
        self.pending.append((symbol, names, generic))
        return symbol

    def _written(self, item: dict, key: str) -> Expression | None:
        """The ``${...}`` expression the spec wrote for this value, if it wrote one."""
        prefix, _, field_name = key.partition(".")
        if prefix == "l":
            raw = item.get(field_name)
        elif prefix == "kw":
            raw = (item.get("params") or {}).get(field_name)
        else:
            return None
        return self.expression(raw)

    def expression(self, raw: Any) -> Expression | None:
        """The expression a value of the definition was written as (parsed when the spec was
        loaded), with the spec's own params as their values: the class's arguments are the
        module's params, and the spec's are constants (``planes * width_per_group // 64 *
        groups`` is ``planes`` in ResNet-50)."""
        return raw.simplified(self.constants) if isinstance(raw, Expression) else None


def _evaluate(expression: Expression, params: dict[str, Any]) -> Any:
    return _comparable(expression.evaluate(lambda name: params[name]))


def _annotation(sample: Any) -> str:
    if isinstance(sample, bool):
        return "bool"
    if isinstance(sample, int):
        return "int"
    if isinstance(sample, float):
        return "float"
    if isinstance(sample, tuple):
        return "tuple"
    return "object"

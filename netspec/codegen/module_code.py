"""What differs between the uses of a module definition, as the arguments of the code that builds
them: a generated class's constructor (PyTorch, as torchvision writes a class per block) or a builder
function (Keras, as keras-applications writes ``dense_block(x, blocks, name)``).

A definition is used several times with different values (ResNet's first block of a stage has a
stride and a downsample path, the others do not). What differs between the uses becomes an
argument, named after what it is: a param of the module (``planes``), an expression the spec wrote
(``planes * 4``), or the channels the use receives (``in_channels``); anything else gets a
descriptive name (``conv1_padding``). A layer that some uses leave out (``when: ${downsample}``)
is built only when its condition holds. When the differences cannot be written as arguments (a use
that changes ``bias``), the uses are split into one generated class or function per group that one
can build (``Block``, ``Block2``): still exact, only less compact.

``DefinitionBuilder`` walks the definitions, inner ones first, and does that grouping; each backend
subclasses it with what one generated class or function is in its framework.
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

from netspec.analysis.checker import CheckedLayer, CheckedNet
from netspec.codegen.render import Symbol
from netspec.language.expressions import Expression, ExpressionError
from netspec.language.modules import Instance, ModuleDefinition
from netspec.language.params import REPETITION, PerRepetition
from netspec.layers import fmt_shape
from netspec.layers.base import LAYER_REGISTRY, NETWORK_INPUT, channels_of


class Unexpressible(Exception):
    """The uses differ in a way an argument cannot carry."""


NO_DEFAULT = object()


def is_default(value: Any, default: Any) -> bool:
    """A value a call may leave out: its argument's default, of the same type (True is not 1)."""
    return default is not NO_DEFAULT and type(value) is type(default) and value == default


Generated = TypeVar("Generated")


class DefinitionBuilder(Generic[Generated]):
    """Builds the generated code of a spec's modules, inner definitions first: one class or
    function per definition, or per group of its uses that one can build. A subclass says what one
    is (``symbolic``), how two are compared (``body``) and where each use's values go (``register``)."""

    def __init__(self, net: CheckedNet) -> None:
        self.net = net
        expansion = net.source.loaded.modules
        assert expansion is not None, "a spec with modules"
        self.expansion = expansion
        self.by_name = {cl.name: cl for cl in net.layers}
        self.taken: set[str] = set()  # the names the generated module binds

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

    # --- what a subclass says -------------------------------------------------------------------------

    def generated_name(self, definition: ModuleDefinition, number: int) -> str:
        """The name of the definition's ``number``-th class or function (1 for the only one)."""
        raise NotImplementedError

    def symbolic(self, definition: ModuleDefinition, instances: list[Instance], name: str, *,
                 literal: bool = False) -> tuple[Generated, list[dict[str, Any]]]:
        """The code for ``instances`` with what differs between them as arguments (``literal``:
        one instance's values written out, nothing may differ), and each use's arguments."""
        raise NotImplementedError

    def body(self, generated: Generated) -> Any:
        """What two generated pieces of code must share to be one: everything but their name."""
        raise NotImplementedError

    def register(self, generated: Generated, instances: list[Instance], kwargs: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    # --- grouping the uses ------------------------------------------------------------------------------

    def _build_definition(self, definition: ModuleDefinition, instances: list[Instance]) -> None:
        try:
            name = self.unique(self.generated_name(definition, 1), reserve=False)
            generated, kwargs = self.symbolic(definition, instances, name)
            self.taken.add(name)
        except Unexpressible:
            for number, members in enumerate(self._clusters(definition, instances), start=1):
                name = self.unique(self.generated_name(definition, number))
                try:  # what still differs inside a cluster is an argument
                    generated, kwargs = self.symbolic(definition, members, name)
                except Unexpressible:
                    generated, kwargs = self.symbolic(definition, members, name, literal=True)
                self.register(generated, members, kwargs)
            return
        self.register(generated, instances, kwargs)

    def _clusters(self, definition: ModuleDefinition, instances: list[Instance]) -> list[list[Instance]]:
        """The uses in groups that one class or function can build each: the uses with the same
        body (every value written out) start together, and a group joins an earlier one when one
        with arguments builds both (the uses of a block with bias and those without, whatever widths)."""
        bodies: dict[str, list[Instance]] = {}
        for instance in instances:
            probe = self.symbolic(definition, [instance], "Probe", literal=True)[0]
            bodies.setdefault(repr(self.body(probe)), []).append(instance)
        clusters: list[list[Instance]] = []
        for members in bodies.values():
            for cluster in clusters:
                try:
                    self.symbolic(definition, cluster + members, "Probe")
                except Unexpressible:
                    continue
                cluster.extend(members)
                break
            else:
                clusters.append(list(members))
        return clusters

    def unique(self, name: str, *, reserve: bool = True) -> str:
        candidate, number = name, 2
        while candidate in self.taken:
            candidate, number = f"{name}{number}", number + 1
        if reserve:
            self.taken.add(candidate)
        return candidate

    # --- what the uses hold ----------------------------------------------------------------------------

    @staticmethod
    def children(definition: ModuleDefinition, instances: list[Instance]) -> list[tuple[str, Any]]:
        """The body's items with their local names: the definition's, or for a sequential module
        with inline uses, the children those uses expanded to (the same for every use)."""
        if instances[0].children is None:
            return [(item.get("name"), item) for item in definition.layers]
        if any([key for key, _ in i.children or []] != [key for key, _ in instances[0].children] for i in instances):
            raise Unexpressible("the uses expand to different children")
        return instances[0].children

    def output_of(self, scoped: str):
        """The output shape of a scoped layer or module use."""
        if scoped in self.by_name:
            return self.by_name[scoped].output_shape
        last = [i for i in self.expansion.instances if i.path == scoped or i.group == scoped][-1]
        return self.by_name[last.output].output_shape if last.output in self.by_name else self.net.input_shape

    def shape(self, members: list[str | None], fmt=fmt_shape) -> str:
        """The members' one output shape as ``fmt`` writes it, or "varies"."""
        shapes = {fmt(self.output_of(m)) for m in members if m is not None}
        return shapes.pop() if len(shapes) == 1 else "varies"

    def input_channels(self, instance: Instance) -> int:
        if instance.input == NETWORK_INPUT:
            return channels_of(self.net.input_shape)
        return channels_of(self.by_name[instance.input].output_shape)

    @staticmethod
    def item_inputs(item: dict, renamed: dict[str, str], previous: str) -> list[str]:
        given = item.get("inputs")
        if given is None:
            return [previous]
        names = [given] if isinstance(given, str) else list(given)
        return [renamed.get(name, name) for name in names]


def layer_values(cl: CheckedLayer, pads) -> dict[str, Any]:
    """A checked layer's values by key: its fields (``l.``), its resolved values (``r.``), and its
    padding as the backend splits it (``pad``, ``pre_pad``)."""
    op_padding, pre_pad = pads(cl)
    values = {f"l.{key}": value for key, value in dict(cl.layer).items() if key not in ("name", "type", "inputs")}
    values.update({f"r.{key}": value for key, value in cl.resolved.items()})
    values["pad"] = op_padding
    values["pre_pad"] = pre_pad
    return values



def comparable(value: Any) -> Any:
    """A per-axis value the same along every axis ((3, 3), or a 1-D layer's (3,)) compares equal
    to the int a param gives (torch takes either)."""
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        return value[0]
    return value


class Arguments:
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
        # which repetition of its item the current child is: an inline use's repetitions are children
        # of one item, whose params written from `repetition` differ between them
        self.repetition = 0
        self._repetitions: dict[int, int] = {}

    def enter(self, item: dict) -> None:
        """The values that follow are the next child's, of ``item``: counts its repetitions."""
        self.repetition = self._repetitions.get(id(item), -1) + 1
        self._repetitions[id(item)] = self.repetition

    def _scope(self, position: int) -> dict[str, Any]:
        return {**self.instances[position].params, "in_channels": self.channels[position]}

    def evaluates_to(self, expression: Expression, positions: list[int], wanted: list[Any]) -> bool:
        if not expression.names <= {*self.definition.params, "in_channels"}:
            return False
        try:
            return [evaluate(expression, self._scope(i)) for i in positions] == [comparable(w) for w in wanted]
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
        self.used.setdefault(name, annotation(sample))

    def condition(self, item: dict, present: list[bool]) -> str:
        expression = self.expression(item.get("when"))
        if expression is None:
            raise Unexpressible("a layer left out per use by a value that is not a param expression")
        if not expression.names <= set(self.definition.params):
            raise Unexpressible("the condition uses values that are not the module's params")
        for name in expression.names:
            self._use(name, self.instances[0].params[name])
        return expression.python()

    def symbolize(self, item: dict, values: list[dict[str, Any]], positions: list[int], local: str,
                  channel_keys: set[str]) -> dict:
        """Each key's value, or a Symbol when the uses differ; grouped by prefix (l, r, kw, pad).
        ``channel_keys`` are the keys whose value is the channels the item receives."""
        self.channel_keys = channel_keys
        grouped: dict[str, Any] = {"l": {}, "r": {}, "kw": {}, "pad": None, "pre_pad": None}
        layer_class = LAYER_REGISTRY.get(item.get("type"))  # type: ignore[arg-type]
        passed_on = set(layer_class.value_fields) if layer_class is not None else set()
        for key in values[0]:
            column = [row.get(key) for row in values]
            # a layer's flag or name (bias, ceil_mode, an activation) decides what its macro writes, so
            # it is never an argument: uses that differ in one get a class each
            prefix, _, field_name = key.partition(".")
            flag = prefix in ("l", "r") and field_name not in passed_on and any(isinstance(v, bool | str)
                                                                                  for v in column)
            if all(v == column[0] for v in column) and (flag or not self._named(item, key)):
                value = column[0]
            elif flag:
                raise Unexpressible(f"the uses differ in {key.partition('.')[2]}, which the layer's code branches on")
            else:
                value = self._symbol(item, key, column, positions, local)
            prefix, _, rest = key.partition(".")
            if rest:
                grouped[prefix][rest] = value
            else:
                grouped[key] = value
        if isinstance(grouped["pre_pad"], Symbol):
            raise Unexpressible("padding on one side only differs between uses")
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
        wanted = [comparable(v) for v in column]
        hint = self.channel_hint if key in self.channel_keys else None
        if hint is not None and self.evaluates_to(hint, positions, wanted):
            return self._pending(Symbol(hint.python()), self._needs(hint, positions[0]))
        written = self._written(item, key)
        if written is not None and self.evaluates_to(written, positions, column):
            return self._pending(Symbol(written.python()), self._needs(written, positions[0]))
        for name in self.definition.params:
            if [comparable(instance.params[name]) for instance in instances] == wanted:
                return self._pending(Symbol(name), [(name, instances[0].params[name])])
        if [self.channels[i] for i in positions] == wanted:
            return self._pending(Symbol("in_channels"), [("in_channels", 0)])
        if all(v == column[0] for v in column):
            return column[0]  # a channel count that no argument gives: written out
        if len(positions) != len(self.instances):
            raise Unexpressible("a value differs between the uses of a layer that some uses leave out")
        name = re.sub(r"[^A-Za-z0-9_]", "_", f"{local}_{key.partition('.')[2] or key}")
        return self._pending(Symbol(name), [(name, column[0])], column)

    def _pending(self, symbol: Symbol, names: list[tuple[str, Any]], generic: list[Any] | None = None) -> Symbol:
        self.pending.append((symbol, names, generic))
        return symbol

    def _written(self, item: dict, key: str) -> Expression | None:
        """The ``${...}`` expression the spec wrote for this value, if it wrote one."""
        prefix, _, field_name = key.partition(".")
        if key == "pad":  # the padding the op (or a padding layer) takes: the spec's `padding: ${(k - 1) // 2}`
            raw = item.get("padding")
        elif prefix == "l":
            raw = item.get(field_name)
        elif prefix == "kw":
            raw = (item.get("params") or {}).get(field_name)
            if isinstance(raw, PerRepetition):  # this repetition's: `start + repetition` is `start + 1` in the second
                return raw.expression.simplified({**self.constants, REPETITION: self.repetition})
        else:
            return None
        return self.expression(raw)

    def expression(self, raw: Any) -> Expression | None:
        """The expression a value of the definition was written as (parsed when the spec was
        loaded), with the spec's own params as their values: the class's arguments are the
        module's params, and the spec's are constants (``planes * width_per_group // 64 *
        groups`` is ``planes`` in ResNet-50)."""
        return raw.simplified(self.constants) if isinstance(raw, Expression) else None


def evaluate(expression: Expression, params: dict[str, Any]) -> Any:
    return comparable(expression.evaluate(lambda name: params[name]))


def annotation(sample: Any) -> str:
    if isinstance(sample, bool):
        return "bool"
    if isinstance(sample, int):
        return "int"
    if isinstance(sample, float):
        return "float"
    if isinstance(sample, tuple):
        return "tuple"
    if isinstance(sample, str):
        return "str"
    return "object"

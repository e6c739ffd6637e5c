"""From an imported model's tree to a spec that reads as if written by hand.

Every module class the model uses becomes one module definition (``Bottleneck`` once, not once per
block); what differs between its uses becomes its params, named after what they set
(``out_channels``, ``stride``), with a value that follows from another written as an expression
of it (``${4 * out_channels}``); a part some uses lack is kept ``when`` a flag param says so; a
chain of uses of one definition that differ only in the first becomes ``repeat`` with ``first``.
Channels coming in are left for the checker to infer, and every layer keeps the name the model's
state dict gives it, so the original weights load strictly into the spec's model.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from netspec.errors import ModelImportError
from netspec.importing.tree import INPUT, Instance, Step
from netspec.layers.base import LAYER_REGISTRY, class_name_problem


@dataclass
class Definition:
    """One module definition and the instances it writes."""

    name: str
    kind: str
    sequential: bool
    order: list[str]  # step names, merged over the instances
    instances: list[Instance]
    # per step: its type or module, its inputs (as the instances that have it take them)
    template: dict[str, Step] = field(default_factory=dict)
    present: dict[str, list[bool]] = field(default_factory=dict)  # per step: which instances have it
    params: dict[str, Any] = field(default_factory=dict)  # name -> default
    written: dict[tuple[str, str], Any] = field(default_factory=dict)  # (step, field) -> value or "${...}"
    flags: dict[str, str] = field(default_factory=dict)  # step -> the flag param that keeps it
    values: list[dict[str, Any]] = field(default_factory=list)  # per instance: its params' values
    key: tuple = ()  # what instances of one definition share: their class (an nn.Sequential: its contents)


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class SpecBuilder:
    """Builds the spec's ``modules`` and ``layers`` from the model's tree."""

    def __init__(self, root: Instance) -> None:
        self.root = root
        self.definitions: dict[str, Definition] = {}
        self.of: dict[int, Definition] = {}  # id(instance) -> its definition
        self.taken: set[str] = set()
        self.repeats: dict[int, Definition] = {}  # id(sequential instance) -> the definition it repeats

    # --- grouping -----------------------------------------------------------------------------

    def build(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        # children before parents: a parent's steps name its children's definitions
        for instance in self._post_order(self.root):
            if instance is not self.root and self._repeated_definition(instance) is None:
                self._assign(instance)
        for definition in self.definitions.values():
            self._infer_params(definition)
        modules = {d.name: self._definition_body(d) for d in self._ordered_definitions()}
        return modules, self._layers(self.root)

    def _post_order(self, instance: Instance) -> list[Instance]:
        out: list[Instance] = []
        for step in instance.steps:
            if step.child is not None:
                out += self._post_order(step.child)
        out.append(instance)
        return out

    def _group_key(self, instance: Instance) -> tuple:
        if instance.kind != "Sequential":
            return (instance.kind, instance.sequential)
        # plain nn.Sequential: grouped by what it holds
        return ("Sequential", True, tuple(self._step_kind(step) for step in instance.steps))

    def _fingerprint(self, instance: Instance) -> tuple:
        """Everything an instance writes: equal for two uses that the same params build."""
        return tuple((s.name, tuple(s.inputs), self._fingerprint(s.child) if s.child is not None else
                      repr(sorted(s.layer.items()) if s.layer else None)) for s in instance.steps)

    def _repeated_definition(self, instance: Instance) -> Definition | None:
        """The definition an nn.Sequential of one definition's uses repeats (ResNet's layer1: the
        uses after the first alike), which its parent writes as ``repeat``; else None."""
        if id(instance) in self.repeats:
            return self.repeats[id(instance)]
        pattern = _repetition_names(instance)
        # one use named block1-0 is a repeat too: its name can only be written by `names:`
        if len(instance.steps) < (1 if pattern else 2) or any(s.child is None for s in instance.steps) or \
                (instance.kind != "Sequential" and pattern is None):
            return None
        definitions = {id(self.of.get(id(s.child))) for s in instance.steps if s.child is not None}
        first = self.of.get(id(instance.steps[0].child)) if instance.steps[0].child is not None else None
        if first is None or len(definitions) != 1:
            return None
        rest = {self._fingerprint(s.child) for s in instance.steps[1:] if s.child is not None}
        if len(rest) > 1 or not rest and len(instance.steps) > 1:
            return None
        self.repeats[id(instance)] = first
        return first

    def _assign(self, instance: Instance) -> None:
        """Into the first definition of its kind that can write it too, or a new one."""
        key = self._group_key(instance)
        for definition in self.definitions.values():
            if definition.key != key:
                continue
            merged = _merge_order(definition.order, [s.name for s in instance.steps])
            if merged is not None and self._fits(merged, [*definition.instances, instance]):
                definition.order = merged
                definition.instances.append(instance)
                definition.template = self._template(definition.instances)
                self.of[id(instance)] = definition
                return
        stem = self._use_name(instance) if instance.kind in ("Sequential", "NamedSequential") else snake(instance.kind)
        definition = Definition(self._unique(stem), instance.kind, instance.sequential,
                                [s.name for s in instance.steps], [instance], key=key)
        for step in instance.steps:
            definition.template.setdefault(step.name, step)
        self.definitions[definition.name] = definition
        self.of[id(instance)] = definition

    def _fits(self, order: list[str], members: list[Instance]) -> bool:
        """Whether one definition writes all of these instances: each step the same kind of thing
        wherever it is, and its inputs the same once an absent step passes its input on."""
        template = self._template(members)
        for instance in members:
            for step in instance.steps:
                if self._step_kind(template[step.name]) != self._step_kind(step):
                    return False
        for step in template.values():  # a repeated chain is written from one use: all must hold the same
            if step.child is not None and self._repeated_definition(step.child) is not None:
                chains = {self._fingerprint(s.child) for i in members for s in i.steps
                          if s.name == step.name and s.child is not None}
                if len(chains) > 1:
                    return False
        for instance in members:
            names = {s.name for s in instance.steps}
            for step in instance.steps:
                wanted = [_resolve(name, template, names) for name in template[step.name].inputs]
                if wanted != step.inputs and not (self._commutative(step) and sorted(wanted) == sorted(step.inputs)):
                    return False
            # and what the definition returns, its last step, is what the instance returns
            if _resolve(order[-1], template, names) != instance.steps[-1].name:
                return False
        return True

    @staticmethod
    def _commutative(step: Step) -> bool:
        """A sum or product: its inputs in any order (RegNet adds proj + f where it has a
        projection, else x + f)."""
        return step.layer is not None and getattr(LAYER_REGISTRY[step.layer["type"]], "commutative", False)

    @staticmethod
    def _template(members: list[Instance]) -> dict[str, Step]:
        """Each step as the instance with the most steps has it: a merge that takes an optional
        branch (ResNet's add of the downsample) names it, where the others take its input."""
        template: dict[str, Step] = {}
        for instance in sorted(members, key=lambda i: -len(i.steps)):
            for step in instance.steps:
                template.setdefault(step.name, step)
        return template

    def _step_kind(self, step: Step) -> str:
        if step.child is not None:
            definition = self.of.get(id(step.child))
            return f"module {definition.name if definition else step.child.kind}"
        return str(step.layer["type"]) if step.layer else ""

    def _use_name(self, instance: Instance) -> str:
        """An nn.Sequential's definition name: its attribute's (downsample, classifier), or for a
        numbered one, what it holds (cnblocks: uses of cnblock; layernorm_conv2d: those layers)."""
        last = instance.path.rsplit(".", 1)[-1] if instance.path else "model"
        if not last.isdigit():
            return snake(last)
        kinds = [self._step_kind(step).removeprefix("module ") for step in instance.steps]
        if len(set(kinds)) == 1 and instance.steps[0].child is not None:
            return f"{kinds[0]}s"
        return "_".join(dict.fromkeys(kinds))[:40]

    def _unique(self, stem: str) -> str:
        stem = re.sub(r"[^a-z0-9_]", "_", stem.lower()).strip("_") or "block"
        if not stem[0].isalpha():
            stem = f"block_{stem}"
        name, number = stem, 2
        while name in self.taken or class_name_problem(name, "module"):
            name = f"{stem}_{number}" if not class_name_problem(stem, "module") else f"{stem}_block"
            if name in self.taken or class_name_problem(name, "module"):
                name = f"{stem}_block_{number}"
            number += 1
        self.taken.add(name)
        return name

    # --- params -------------------------------------------------------------------------------

    def _columns(self, definition: Definition) -> list[tuple[str, str, list[Any]]]:
        """(step, field, value per instance) of every value the instances write: a layer's fields
        and a child use's params (None where the instance lacks the step)."""
        columns = []
        for step_name in definition.order:
            template = definition.template[step_name]
            steps = [next((s for s in i.steps if s.name == step_name), None) for i in definition.instances]
            if template.child is None:
                assert template.layer is not None
                for key in template.layer:
                    if key != "type":
                        columns.append((step_name, key, [s.layer.get(key) if s and s.layer else None for s in steps]))
            else:
                for key in self._use_params(steps[next(i for i, s in enumerate(steps) if s)]):
                    columns.append((step_name, key, [self._use_params(s).get(key) if s else None for s in steps]))
        return columns

    def _use_params(self, step: Step | None) -> dict[str, Any]:
        if step is None or step.child is None:
            return {}
        child = step.child
        repeated = self._repeated_definition(child)
        if repeated is not None:
            return {}
        definition = self.of[id(child)]
        return definition.values[definition.instances.index(child)]

    def _infer_params(self, definition: Definition) -> None:
        """Params for what differs between the instances; values that follow from one written as
        its expression; a flag for each step some instances lack."""
        if definition.values:
            return
        for step_name in definition.order:  # the children's definitions first: their params are columns here
            child = definition.template[step_name].child
            if child is not None:
                inner = self._repeated_definition(child) or self.of.get(id(child))
                if inner is not None:
                    self._infer_params(inner)
        for step_name in definition.order:
            definition.present[step_name] = [any(s.name == step_name for s in i.steps) for i in definition.instances]
        count = len(definition.instances)
        values: list[dict[str, Any]] = [{} for _ in range(count)]
        bases: list[tuple[str, list[Any]]] = []
        for step_name, key, column in self._columns(definition):
            present = [v for v in column if v is not None]
            if len(set(map(repr, present))) <= 1:
                definition.written[(step_name, key)] = present[0] if present else None
                continue
            expression = _relation(column, bases)
            if expression is not None:
                definition.written[(step_name, key)] = expression
                continue
            param = self._param_name(definition, step_name, key)
            default = _most_common(present)
            definition.params[param] = default
            filled = [v if v is not None else default for v in column]
            bases.append((param, filled))
            for row, value in zip(values, filled, strict=True):
                row[param] = value
            definition.written[(step_name, key)] = f"${{{param}}}"
        for step_name, present in definition.present.items():
            if all(present):
                continue
            flag = self._param_name(definition, step_name, "")
            definition.flags[step_name] = flag
            definition.params[flag] = _most_common(present)
            for row, there in zip(values, present, strict=True):
                row[flag] = there
        definition.values = values

    def _param_name(self, definition: Definition, step_name: str, key: str) -> str:
        """A field's own name (``stride``), or where another param took it, the step's and the
        field's (``se_out_channels``), else numbered; a flag is the step's name (``downsample``:
        whether the block has one), or for a numbered step, its layer's (``with_relu``)."""
        named = re.match(r"^[A-Za-z]\w*$", step_name) is not None
        if key:
            stem = f"{step_name}_{key.removeprefix(f'{step_name}_')}" if key in definition.params and named else key
        else:
            stem = step_name if named else f"with_{self._step_kind(definition.template[step_name]).split()[-1]}"
        name, number = stem, 2
        while name in definition.params:
            name, number = f"{stem}_{number}", number + 1
        return name

    # --- writing --------------------------------------------------------------------------------

    def _ordered_definitions(self) -> list[Definition]:
        """Each definition after the ones it uses, in the order the model meets them."""
        ordered: list[Definition] = []

        def visit_steps(steps: list[Step]) -> None:
            for step in steps:
                if step.child is not None:
                    inner = self._repeated_definition(step.child) or self.of.get(id(step.child))
                    if inner is None:  # a repeated chain's own steps
                        visit_steps(step.child.steps)
                    elif inner not in ordered:
                        visit_steps(list(inner.template.values()))
                        if inner not in ordered:
                            ordered.append(inner)

        visit_steps(self.root.steps)
        return ordered

    def _definition_body(self, definition: Definition) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if definition.sequential:
            body["sequential"] = True
        if definition.params:
            body["params"] = dict(definition.params)
        body["layers"] = self._definition_layers(definition)
        return body

    def _definition_layers(self, definition: Definition) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        previous = INPUT
        for step_name in definition.order:
            template = definition.template[step_name]
            item: dict[str, Any] = {} if definition.sequential else {"name": _layer_name(step_name, definition)}
            fields = {key: value for (name, key), value in definition.written.items() if name == step_name}
            if template.child is None:
                assert template.layer is not None
                item["type"] = template.layer["type"]
                item.update(without_defaults(str(template.layer["type"]), fields))
            else:
                item.update(self._use(template.child, fields))
            if not definition.sequential and template.inputs != [previous]:
                item["inputs"] = template.inputs[0] if len(template.inputs) == 1 else list(template.inputs)
            if step_name in definition.flags:
                item["when"] = f"${{{definition.flags[step_name]}}}"
            items.append(item)
            previous = step_name
        return _compress_runs(items) if definition.sequential else items

    def _use(self, child: Instance, params: dict[str, Any]) -> dict[str, Any]:
        repeated = self._repeated_definition(child)
        if repeated is not None:
            return self._repeat(child, repeated)
        definition = self.of[id(child)]
        item: dict[str, Any] = {"module": definition.name}
        given = {k: v for k, v in params.items() if k in definition.params and v != definition.params[k]
                 or isinstance(v, str) and v.startswith("${")}
        if given:
            item["params"] = given
        return item

    def _repeat(self, sequence: Instance, definition: Definition) -> dict[str, Any]:
        """A chain of one definition's uses as ``repeat``, the first one's differences as ``first``."""
        rows = [definition.values[definition.instances.index(step.child)] for step in sequence.steps
                if step.child is not None]
        rest, first = rows[1:] or rows[:1], rows[0]
        item: dict[str, Any] = {"module": definition.name, "repeat": len(rows)}
        pattern = _repetition_names(sequence)
        if pattern:  # not numbered from 0 (ViT's encoder_layer_0, RegNet's block1-0)
            item["names"] = pattern
        if all(row == rest[0] for row in rest):
            common = {k: v for k, v in rest[0].items() if v != definition.params[k]}
            differ = {k: v for k, v in first.items() if rest[0].get(k) != v}
            if common:
                item["params"] = common
            if differ:
                item["first"] = differ
            return item
        raise AssertionError("a repeat whose uses after the first differ")  # _repeated_definition refused it

    def _layers(self, root: Instance) -> list[dict[str, Any]]:
        """The spec's own layers: the model's forward, as a module body written out."""
        items: list[dict[str, Any]] = []
        previous = INPUT
        for step in root.steps:
            item: dict[str, Any] = {"name": _layer_name(step.name, None)}
            if step.child is None:
                assert step.layer is not None
                item["type"] = step.layer["type"]
                item.update(without_defaults(str(step.layer["type"]),
                                              {k: v for k, v in step.layer.items() if k != "type"}))
            else:
                item.update(self._use(step.child, self._use_params(step)))
            if step.inputs != [previous]:
                item["inputs"] = step.inputs[0] if len(step.inputs) == 1 else list(step.inputs)
            items.append(item)
            previous = step.name
        return items


def _layer_name(name: str, definition: Definition | None) -> str:
    """A step's name as a spec's layer name; a chain's child named block1-0 that is not one of a
    repeat's (whose ``names:`` writes it) is refused with where it is."""
    if name.isidentifier():
        return name
    path = definition.instances[0].path if definition else ""
    raise ModelImportError.single(
        f"{f'{path}.{name}' if path else name}: the name {name!r} cannot name a spec's layer (letters, digits and "
        "underscores); a chain of one module's uses named so is written as a repeat, but this one is not",
        hint="netspec import keeps the state dict's names, so that the original's weights load")


def _repetition_names(instance: Instance) -> str | None:
    """The ``names`` pattern of a chain of children named by a prefix and their number
    (``encoder_layer_{i}``, ``block1-{i}``; "" for 0, 1, ...); None for another module."""
    numbered = [re.fullmatch(r"(.*?)(\d+)", step.name) for step in instance.steps]
    if not all(numbered) or len({m.group(1) for m in numbered if m}) != 1:
        return None
    numbers = [int(m.group(2)) for m in numbered if m]
    if numbers[0] not in (0, 1) or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return None
    previous = INPUT
    for step in instance.steps:  # each child on the one before: a chain
        if step.inputs != [previous]:
            return None
        previous = step.name
    prefix = numbered[0].group(1) if numbered[0] else ""
    if not prefix:
        return "" if numbers[0] == 0 else None
    return f"{prefix}{{i}}" if numbers[0] == 0 else f"{prefix}{{n}}"


def _resolve(name: str, template: dict[str, Step], present: set[str]) -> str:
    """What an input name stands for in an instance: itself, or for a step the instance lacks, the
    first input of that step (as a spec's `when: false` passes it on)."""
    seen = set()
    while name != INPUT and name not in present and name in template and name not in seen:
        seen.add(name)
        name = template[name].inputs[0]
    return name


def _merge_order(order: list[str], other: list[str]) -> list[str] | None:
    """One order of step names that both keep in their own order, or None."""
    merged: list[str] = []
    matcher = difflib.SequenceMatcher(a=order, b=other, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            merged += order[a0:a1]
        else:
            merged += order[a0:a1] + [n for n in other[b0:b1] if n not in order[a0:a1]]
    if len(set(merged)) != len(merged):
        return None
    return merged


def _relation(column: list[Any], bases: list[tuple[str, list[Any]]]) -> str | None:
    """An expression of an earlier param that gives every instance's value (`${4 * width}`)."""
    for name, base in bases:  # the same values (Swin's two stochastic depths of a block)
        if all(repr(v) == repr(b) for v, b in zip(column, base, strict=True) if v is not None):
            return f"${{{name}}}"
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in column if v is not None):
        return None
    for name, base in bases:
        pairs = [(v, b) for v, b in zip(column, base, strict=True) if v is not None]
        if not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for _, b in pairs):
            continue
        if all(v == b for v, b in pairs):
            return f"${{{name}}}"
        ratios = {v / b for v, b in pairs}
        if len(ratios) == 1:
            ratio = ratios.pop()
            if ratio == int(ratio) and ratio > 0:
                return f"${{{int(ratio)} * {name}}}"
            inverse = 1 / ratio if ratio else 0
            if inverse and inverse == int(inverse) and all(b % int(inverse) == 0 for _, b in pairs):
                return f"${{{name} // {int(inverse)}}}"
    return None


def _most_common(values: list[Any]) -> Any:
    counts = Counter(map(repr, values))
    best = max(counts.values())
    return next(v for v in values if counts[repr(v)] == best)


def one_or_list(value: Any) -> Any:
    """An int for a sequence of equal values (a spec writes `kernel_size: 3`), else a list; a
    value that is no sequence as it is."""
    if isinstance(value, tuple | list):
        return value[0] if len(set(value)) == 1 else list(value)
    return value


def without_defaults(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields a spec must write: those that differ from the catalogue's defaults."""
    cls = LAYER_REGISTRY[kind]
    out = {}
    for key, value in fields.items():
        info = cls.model_fields.get(key)
        if info is None:
            continue
        if isinstance(value, str) and value.startswith("${"):
            out[key] = value
            continue
        if not info.is_required():
            default = info.default
            normal = tuple(value) if isinstance(value, list) else value
            if normal == default or isinstance(default, tuple) and isinstance(value, int) and \
                    default == (value,) * len(default) or (key == "stride" and default is None and
                                                            normal == fields.get("kernel_size")):
                continue
        out[key] = value
    return out


def _compress_runs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive uses of one definition in a chain whose params match after the first: one use
    with ``repeat`` (and ``inline``, so that they are numbered in the chain), ``first`` for the
    first one's own."""
    out: list[dict[str, Any]] = []
    index = 0
    while index < len(items):
        item = items[index]
        if "module" not in item or "repeat" in item:
            out.append(item)
            index += 1
            continue
        end = index + 1
        while end < len(items) and items[end].get("module") == item["module"] and "repeat" not in items[end] and \
                items[end].get("params", {}) == items[index + 1].get("params", {}) and "when" not in items[end]:
            end += 1
        if end - index >= 3 or end - index == 2 and items[index + 1].get("params") == item.get("params"):
            rest = items[index + 1].get("params", {})
            first = {k: v for k, v in item.get("params", {}).items() if rest.get(k) != v}
            # a param the first leaves at its default while the rest set it
            first.update({k: None for k in rest if k not in item.get("params", {})})
            if all(v is not None for v in first.values()):
                use: dict[str, Any] = {"module": item["module"], "repeat": end - index, "inline": True}
                if rest:
                    use["params"] = rest
                if first:
                    use["first"] = first
                out.append(use)
                index = end
                continue
        out.append(item)
        index += 1
    return out

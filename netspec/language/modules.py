"""Modules: named, reusable sub-networks with parameters, expanded into the flat layer graph.

A spec declares them under ``modules:`` and uses them like a layer, with ``module:`` instead of
``type:``::

    modules:
      basic_block:
        params: {planes: 64, stride: 1, downsample: false}
        layers:
          - {name: conv1, type: conv2d, out_channels: "${planes}", kernel_size: 3, stride: "${stride}", ...}
          - ...
          - {name: downsample, module: conv_bn, inputs: input, when: "${downsample}", params: {...}}
          - {name: add, type: add, inputs: [bn2, downsample]}
    layers:
      - {name: layer2, module: basic_block, repeat: 2, params: {planes: 128}, first: {stride: 2, downsample: true}}

Each use is a scope: its layers are named ``layer2.0.conv1``, as torchvision's state dicts name
them. ``repeat: N`` stamps the module N times in a chain (``layer2.0``, ``layer2.1``), ``first:``
overrides params of the first repetition, ``names: denselayer{n}`` names the repetitions as
torchvision's DenseNet does (``{n}`` counts from 1, ``{i}`` from 0). ``when: false`` leaves a layer or use out; whatever
named it as an input then takes its (first) input instead: an absent downsample path is the
identity, an absent squeeze-and-excitation ``multiply: [features, gate]`` passes the features on.
A ``sequential: true`` module is a chain whose layers are numbered as in ``nn.Sequential`` (an
``activation:`` shorthand takes the next number, as its own module). Inside one, ``inline: true``
numbers a use's contents in that same sequence, as torchvision writes ``nn.Sequential(*layers)``:
each repetition of a sequential module adds its layers, of any other module itself (VGG's
convolutions, MobileNetV2's blocks as ``features.1`` to ``features.17``).

Expansion works on the located YAML tree before validation, so every expanded layer keeps the file
and line of its definition; ``${...}`` in a module's layers sees the module's params first, then
the spec's.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from netspec.errors import Location, Problem, SpecError, Suggestions, closest_name, did_you_mean, listing
from netspec.language.params import PerRepetition
from netspec.language.yamlio import LList, LMap, child_loc
from netspec.layers.base import (
    LAYER_REGISTRY,
    LOCAL_CODE_NAMES,
    MAX_NAME_LENGTH,
    NETWORK_INPUT,
    REPETITION_NAME,
    class_name_problem,
    generated_code_names,
)

MAX_REPEAT = 1024
# The largest torchvision network has about 1,000 layers: past 20,000 a spec is a mistake, and
# refusing it early keeps checking a hostile spec within seconds (every later pass is linear).
MAX_LAYERS = 20_000
MAX_NESTING = 16
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


_Names = Annotated[list[str], Field(min_length=1)]


class _Format(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ModuleDefinitionFormat(_Format):
    """A module definition under ``modules:``, as written. Its layers are validated as layers once
    expanded, where every ``${...}`` has its value."""

    # any key: a name that cannot be an argument is refused with the reason (_param_name_problem)
    params: dict[Any, Any] = Field(default_factory=dict,
                                   description="Param names and defaults (null: every use gives it).")
    inputs: str | _Names | None = Field(
        None, description="The names its layers take a use's inputs by (default: one, 'input').")
    layers: list[Any] = Field(min_length=1, description="Its layers and uses of other modules.")
    sequential: bool = Field(False, description="A chain numbered as nn.Sequential numbers it.")
    description: str | None = None


class ModuleUseFormat(_Format):
    """A use of a module declared under ``modules:``, in place of a layer (its ``${...}`` substituted)."""

    name: str | None = None
    module: str
    inputs: str | _Names | None = Field(None, description="The layers it takes, in the order the module declares.")
    params: dict[str, Any] = Field(default_factory=dict, description="Values for the module's params.")
    repeat: int | None = Field(None, ge=1, le=MAX_REPEAT, description="Stamp the module this many times in a chain.")
    first: dict[str, Any] | None = Field(None, description="Params of the first repetition.")
    names: str | None = Field(None, description="Repetition names: denselayer{n} (from 1), b{i} (from 0).")
    when: bool = Field(True, description="false leaves the use out; whoever takes it takes its input instead.")
    inline: bool = Field(False, description="Number the use's contents in the enclosing sequence.")


USE_KEYS = tuple(ModuleUseFormat.model_fields)
DEFINITION_KEYS = tuple(ModuleDefinitionFormat.model_fields)
# what a mistake in one key of a definition or a use is called; others get pydantic's own words
_KEY_MESSAGES = {
    "layers": "{owner} needs 'layers' (a non-empty list)",
    "params": "'params' of {owner} must be a mapping of names to {values}",
    "first": "'first' of {owner} must be a mapping of param names to values",
    "repeat": f"'repeat' must be an integer from 1 to {MAX_REPEAT}, got {{value!r}}",
    "sequential": "'sequential' must be true or false",
    "module": "'module' names a module declared under 'modules:', got {value!r}",
    "when": "'when' must be true or false, got {value!r}",
    "inline": "'inline' must be true or false, got {value!r}",
}


def format_problems(model: type[_Format], item: LMap, owner: str, where: Location,
                    layer: str | None = None, checked_elsewhere: tuple[str, ...] = ()) -> list[Problem]:
    """``item`` validated against ``model`` (its keys and their kinds), each mistake at its key;
    ``checked_elsewhere`` are keys another step validates (a layer's and a use's ``when`` alike)."""
    plain = {key: dict(value) if isinstance(value, LMap) else list(value) if isinstance(value, LList) else value
             for key, value in item.items() if key not in checked_elsewhere}
    try:
        model.model_validate(plain)
    except ValidationError as exc:
        problems = []
        seen = set()
        for error in exc.errors(include_url=False):
            key = str(error["loc"][0]) if error["loc"] else "layers"
            if key in seen:
                continue
            seen.add(key)
            at = item.locs.get(key, where)
            if error["type"] == "extra_forbidden":
                kind = "a module" if model is ModuleDefinitionFormat else "a use of a module"
                hint = did_you_mean(key, model.model_fields) or f"{kind} has: {', '.join(model.model_fields)}"
                problems.append(Problem(f"unknown key '{key}' in {owner}", at, layer=layer, hint=hint))
                continue
            values = "defaults" if model is ModuleDefinitionFormat else "values"
            message = _KEY_MESSAGES.get(key, f"'{key}' of {owner}: {error['msg']}")
            problems.append(Problem(message.format(owner=owner, values=values, value=plain.get(key)), at,
                                    layer=layer, hint=_HINTS.get(key)))
        return problems
    return []


_HINTS = {"layers": "params: {...} (optional), layers: [...], sequential: true (optional)",
          "params": "params: {planes: 64, stride: 1}"}


@dataclass
class ModuleDefinition:
    name: str
    params: LMap
    layers: LList
    sequential: bool
    location: Location
    # the names its layers call the values a use gives it: one, 'input', unless it declares several
    # (a U-Net decoder block takes the upsampled map and the skip connection)
    inputs: list[str] = field(default_factory=lambda: [NETWORK_INPUT])


@dataclass
class Instance:
    """One use of a module (one repetition of a repeated use), as expanded."""

    path: str  # its scope: "layer2.0"
    definition: str
    params: dict[str, Any]  # the definition's params, resolved for this use
    input: str  # the scoped layer (or 'input') it takes (its first, for a module with several inputs)
    output: str  # the scoped layer whose output is its result
    location: Location  # the use
    present: dict[str, bool] = field(default_factory=dict)  # each item of the definition: used or left out
    group: str | None = None  # the repeated use it belongs to ("layer2")
    members: dict[str, str] = field(default_factory=dict)  # each present item's local name -> scoped name
    # a sequential module with inline uses: its children in order, as (local name, item with values
    # substituted); the definition's own items otherwise (None)
    children: list[tuple[str, Any]] | None = None
    inputs: list[str] = field(default_factory=list)  # every scoped layer it takes, in the definition's order

    def __post_init__(self) -> None:
        self.inputs = self.inputs or [self.input]


@dataclass
class Expansion:
    definitions: dict[str, ModuleDefinition]
    instances: list[Instance]
    # the spec's own items in order, as (name, whether it is a module use), those left out with
    # `when: false` omitted: the network class's attributes, whose contents are the instances
    top_level: list[tuple[str, bool]] = field(default_factory=list)


def copy_tree(value: Any) -> Any:
    """A deep copy of a located tree (every use gets its own layers to substitute into)."""
    if isinstance(value, LMap):
        out = LMap(value.loc)
        for key, item in value.items():
            out[key] = copy_tree(item)
        out.locs.update(value.locs)
        return out
    if isinstance(value, LList):
        out_list = LList(value.loc)
        out_list.extend(copy_tree(item) for item in value)
        out_list.locs[:] = list(value.locs)
        return out_list
    return value


def read_definitions(tree: LMap) -> dict[str, ModuleDefinition]:
    raw = tree.get("modules")
    if raw is None:
        return {}
    where = tree.locs.get("modules", tree.loc)
    if not isinstance(raw, LMap):
        raise SpecError.single("'modules' must map module names to their definitions", where,
                               hint="modules: {fire: {params: {...}, layers: [...]}}")
    problems = []
    definitions = {}
    for name, body in raw.items():
        loc = raw.locs[name]
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            problems.append(Problem(f"module name {name!r} is not a valid name", loc,
                                    hint="letters, digits and underscores, starting with a letter"))
            continue
        clash = class_name_problem(name, "module")
        if clash:  # its generated torch class would be `class None` or shadow an import
            problems.append(Problem(f"module name '{name}' clashes with {clash}", loc, hint=f"try '{name}_block'"))
            continue
        if not isinstance(body, LMap):
            problems.append(Problem(f"module '{name}' needs 'layers' (a non-empty list)", loc, hint=_HINTS["layers"]))
            continue
        found = format_problems(ModuleDefinitionFormat, body, f"module '{name}'", loc)
        if found:
            problems += found
            continue
        params = body.get("params", LMap(loc))
        for key in params:
            problem = _param_name_problem(key)
            if problem:
                problems.append(Problem(f"module '{name}' cannot have a param named {key!r}: {problem}",
                                        params.locs[key], hint=f"try '{key}_'" if _IDENTIFIER.match(str(key)) else
                                        "letters, digits and underscores, starting with a letter"))
        problems += _repeated_names(name, body["layers"])
        sequential = body.get("sequential", False)
        inputs = _declared_inputs(name, body, sequential, problems)
        definitions[name] = ModuleDefinition(name, params, body["layers"], sequential, loc, inputs)
    if problems:
        raise SpecError(problems)
    return definitions


def _repeated_names(module: str, layers: LList) -> list[Problem]:
    """Two layers or uses of one name in a module's body: the generated class holds each as an
    attribute of that name, so the second would take the first's place, even where `when:` leaves
    one of them out of every use."""
    problems, seen = [], set()
    for item in layers:
        name = item.get("name") if isinstance(item, LMap) else None
        if not isinstance(name, str):  # unnamed, or a name that is no text (reported as such)
            continue
        if name in seen:
            problems.append(Problem(f"module '{module}' has two layers named '{name}'", item.locs.get("name", item.loc),
                                    layer=name, hint="give each its own name; alternatives chosen by 'when:' too, or "
                                                     "write a module for each"))
        seen.add(name)
    return problems


def _declared_inputs(name: str, body: LMap, sequential: bool, problems: list[Problem]) -> list[str]:
    """The names a module's layers call its inputs: ``inputs: [up, skip]``, or the one 'input'."""
    if "inputs" not in body:
        return [NETWORK_INPUT]
    where = body.locs["inputs"]
    given = body["inputs"]
    names = [given] if isinstance(given, str) else list(given) if isinstance(given, LList) else None
    hint = "inputs: [up, skip]: the names its layers take them by, in the order a use gives them"
    if not names or not all(isinstance(n, str) for n in names):
        problems.append(Problem(f"'inputs' of module '{name}' must name its inputs", where, hint=hint))
        return [NETWORK_INPUT]
    if sequential and len(names) > 1:
        problems.append(Problem(f"the sequential module '{name}' is a chain, so it takes one input", where,
                                hint="leave out sequential: true to write a module that joins several inputs"))
        return [NETWORK_INPUT]
    layer_names = {item.get("name") for item in body["layers"] if isinstance(item, LMap)}
    for input_name in names:
        problem = None
        if not _IDENTIFIER.match(input_name) or keyword.iskeyword(input_name):
            problem = "it is not a valid name"
        elif input_name in generated_code_names() or input_name in ("self", "inputs"):
            problem = "the generated code uses that name"
        elif input_name in layer_names:
            problem = "a layer of the module has that name"
        elif names.count(input_name) > 1:
            problem = "it is named twice"
        if problem:
            problems.append(Problem(f"module '{name}' cannot call an input {input_name!r}: {problem}", where,
                                    hint=hint))
            return [NETWORK_INPUT]
    return names


def _param_name_problem(key: Any) -> str | None:
    """A module's params become the arguments of a generated class's constructor."""
    if not isinstance(key, str) or not _IDENTIFIER.match(key):
        return "it is not a valid name"
    if keyword.iskeyword(key) or key in ("self", "in_channels"):
        return "the generated class's constructor uses that name itself" if not keyword.iskeyword(key) \
            else "it is a Python keyword"
    if key in generated_code_names() or key in LOCAL_CODE_NAMES:
        return "the generated code uses that name"
    return None


def _written_inputs(item: LMap) -> list[str]:
    given = item.get("inputs")
    names = [given] if isinstance(given, str) else list(given) if isinstance(given, LList) else []
    return [name for name in names if isinstance(name, str)]


def uses_modules(tree: LMap) -> bool:
    """Whether the spec needs expanding: it declares or uses modules, or leaves layers out with ``when``."""
    layers = tree.get("layers")
    return "modules" in tree or (isinstance(layers, LList) and any(
        isinstance(item, LMap) and ("module" in item or "when" in item) for item in layers))


class Expander:
    """Expands module uses in the spec's layer list; ``substitute(tree, lookup, problems)``
    resolves ``${...}`` in a copied tree with a lookup of param values."""

    def __init__(self, definitions: dict[str, ModuleDefinition], global_params: dict[str, Any], substitute):
        self.definitions = definitions
        self.global_params = global_params
        self.substitute = substitute
        self.instances: list[Instance] = []
        self.problems: list[Problem] = []
        self.count = 0
        self.suggest = Suggestions()
        self.long_names: set[Location] = set()  # reported once each, after expansion
        self.top_names: set[Any] = set()  # the spec's own layers and uses, which a module cannot see
        self.top_level: list[tuple[str, bool]] = []  # Expansion.top_level
        # the param values of the scope being expanded, innermost last: a repeated use's params
        # written from `repetition` are evaluated in the scope the use is written in
        self.scope_values: list[dict[str, Any]] = [global_params]

    def report_long_names(self) -> None:
        for where in sorted(self.long_names):
            self.problems.append(Problem(f"a name is longer than {MAX_NAME_LENGTH} characters", where,
                                         hint="use a short name: letters, digits and underscores"))

    # one list of items in one scope -> expanded layers appended to `out`; returns the output ref
    def expand(self, items: LList, scope: str, scope_input: str, out: LList, *, sequential: bool = False,
               depth: int = 0, top: bool = False, members: dict[str, str] | None = None,
               counter: list[int] | None = None, children: list[tuple[str, Any]] | None = None,
               failed: frozenset[Location | None] = frozenset(), scope_inputs: dict[str, str] | None = None) -> str:
        """``counter`` holds a sequential module's next child number, shared with its inline uses;
        ``children`` collects its children in order (for a module with inline uses); ``failed`` is
        where substituting the items' ${...} failed (the value left None is reported there);
        ``scope_inputs`` maps a module's declared input names to what the use gives (the first
        is ``scope_input``)."""
        if top:
            self.top_names = {item.get("name") for item in items
                              if isinstance(item, LMap) and isinstance(item.get("name"), str)}
        renamed: dict[str, str] = dict(scope_inputs) if scope_inputs else {NETWORK_INPUT: scope_input}
        previous = scope_input
        counter = counter if counter is not None else [0]
        for position, item in enumerate(items):
            where = child_loc(items, position, items.loc)
            if not isinstance(item, LMap):
                continue  # validation reports it (top level) or read_definitions did
            name = item.get("name")
            if not isinstance(name, str):
                continue
            if len(name) > MAX_NAME_LENGTH:  # before any scoped name is built from it, once per repetition
                self.long_names.add(item.locs.get("name", where))
                continue
            label = f"{scope}{name}"  # problems name the scoped layer, so repeats of one mistake merge
            if "." in name:
                self.problems.append(Problem(f"the name '{name}' holds a '.', which netspec keeps for the scopes "
                                             "of modules (layer1.0.conv1)", item.locs.get("name", where),
                                             hint=f"try '{name.replace('.', '_')}'"))
                continue
            if sequential and "inputs" in item:
                self.problems.append(Problem("a sequential module is a chain: its layers take no 'inputs'",
                                             item.locs["inputs"], layer=label,
                                             hint="leave out sequential: true to write a graph"))
            type_name = item.get("type")
            kind = LAYER_REGISTRY.get(type_name) if isinstance(type_name, str) else None
            if sequential and kind is not None and not kind.chains_as_module:
                what = "a learned tensor" if kind.learned_tensor else "applied with more than its input as a module"
                self.problems.append(Problem(f"a sequential module applies each layer as a module on one input, "
                                             f"and {item['type']} is {what}", item.locs.get("type", where),
                                             layer=label, hint="leave out sequential: true to write a graph"))
            inputs = self._inputs(item, renamed, previous, name)
            written = _written_inputs(item)
            inside_a_use = [ref for ref in written if "." in ref] if not scope else []
            if inside_a_use:  # the generated forward() sees a use's result, not the layers inside it
                use = inside_a_use[0].split(".")[0]
                self.problems.append(Problem(
                    f"'{inside_a_use[0]}' is a layer inside the module use '{use}'; a layer takes the spec's own "
                    "layers and uses", item.locs.get("inputs", where), layer=label,
                    hint=f"take the use '{use}' (its output is its last layer's)"))
                continue
            # a typo is left for validation, which suggests the module's own names; a scoped name
            # ('a.conv') is a layer inside some use, which the generated class cannot see either
            outside = [ref for ref in written if ref not in renamed and (ref in self.top_names or "." in ref)] \
                if scope else []
            if outside:  # the generated class sees only its own layers and its input
                self.problems.append(Problem(
                    f"a module's layer takes '{outside[0]}', which is not one of the module's layers",
                    item.locs.get("inputs", where), layer=label,
                    hint="a module's layers take the module's own layers or 'input' (what the use is given); "
                         "pass other values through the use's inputs"))
                continue
            if "module" in item and self._arity_problem(item, inputs, label, where):
                continue
            if scope_inputs and NETWORK_INPUT not in scope_inputs and NETWORK_INPUT in written:
                # the module names its inputs: 'input' would reach the network's input from inside it
                self.problems.append(Problem(
                    f"'{NETWORK_INPUT}' names nothing in a module that declares its inputs "
                    f"({', '.join(scope_inputs)})", item.locs.get("inputs", where), layer=label,
                    hint=f"take {' or '.join(repr(name) for name in scope_inputs)}, or one of the module's layers"))
                continue
            when = item.get("when", True)
            if when is None and item.locs["when"] in failed:
                when = True  # an expression that failed: reported where it was written
            if not isinstance(when, bool):
                got = "null" if when is None else repr(when)
                self.problems.append(Problem(f"'when' must be true or false, got {got}", item.locs["when"],
                                             layer=label,
                                             hint="write true or false, or ${NAME} for a param that holds one"))
                when = True
            if not when:
                if not inputs:
                    continue  # validation reports the empty inputs
                renamed[name] = inputs[0]  # left out: whoever takes it takes its (first) input
                continue
            if self._inline(item, sequential, label):
                output = self._use(item, scope, inputs or [scope_input], out, depth, where,
                                   inline=(counter, children, members))
                renamed[name] = previous = output
                continue
            if sequential:
                local = str(counter[0])
                counter[0] += 1 + bool("activation" in item and item["activation"] is not None)
            else:
                local = name
            scoped = f"{scope}{local}"
            if children is not None:
                children.append((local, item))
            if top:
                self.top_level.append((scoped, "module" in item))
            if "module" in item:
                output = self._use(item, scoped, inputs or [scope_input], out, depth, where)
            else:
                layer = copy_tree(item)
                layer.pop("when", None)
                layer["name"] = scoped
                if not top or "inputs" in item or inputs != [previous_flat(out, scope_input)]:
                    raw_inputs = item.get("inputs")
                    layer["inputs"] = _located_list(inputs, layer.locs.get("inputs", where),
                                                    raw_inputs.locs if isinstance(raw_inputs, LList) else None)
                    layer.locs.setdefault("inputs", where)
                out.append(layer)
                out.locs.append(where)
                self.count += 1
                if self.count > MAX_LAYERS:
                    raise SpecError.single(f"the modules expand to more than {MAX_LAYERS:,} layers", where,
                                           hint="check the repeat counts for a typo")
                output = scoped
            renamed[name] = output
            previous = output
            if members is not None:
                members[local if children is not None else name] = scoped
        return previous

    def _arity_problem(self, item: LMap, inputs: list[str], label: str, where: Location) -> bool:
        """Whether a use gives its module other than the inputs it declares (reported), or gives
        several to a repeated or inline use, whose repetitions chain one value."""
        definition = self.definitions.get(item["module"]) if isinstance(item["module"], str) else None
        if definition is None or (len(inputs) <= 1 and len(definition.inputs) == 1):
            return False  # an unknown module is reported by _use
        given = f"{len(inputs)} ({', '.join(_written_inputs(item) or inputs)})" if "inputs" in item \
            else f"1 (the layer before it, '{inputs[0]}')"
        wanted = len(definition.inputs)
        declared = ", ".join(definition.inputs)
        if len(inputs) != wanted:
            if wanted == 1:
                message = f"module '{definition.name}' takes one input, and this use gives it {given}"
                hint = "join the values first (a concat or add layer) and give the use that" + (
                    ", or declare the module's inputs: inputs: [up, skip]" if definition.inputs == [NETWORK_INPUT]
                    else "")
            else:
                message = (f"module '{definition.name}' takes {wanted} inputs ({declared}), and this use gives it "
                           f"{given}")
                hint = f"inputs: [{', '.join(f'<{name}>' for name in definition.inputs)}], in that order"
            self.problems.append(Problem(message, item.locs.get("inputs", where), layer=label, hint=hint))
            return True
        if "repeat" in item or item.get("inline") is True:
            self.problems.append(Problem(
                f"module '{definition.name}' takes {wanted} inputs, and a repeated or inline use chains one value "
                "from each repetition to the next", item.locs.get("repeat", item.locs.get("inline", where)),
                layer=label, hint="write one use per repetition, each with its inputs"))
            return True
        return False

    def _inline(self, item: LMap, sequential: bool, label: str) -> bool:
        inline = item.get("inline", False)
        if inline is False:
            return False
        if "module" not in item:
            return False  # validation reports 'inline' as an unknown field of a layer
        if not isinstance(inline, bool):
            self.problems.append(Problem(f"'inline' must be true or false, got {inline!r}", item.locs["inline"],
                                         layer=label))
            return False
        if not sequential:
            self.problems.append(Problem("'inline' numbers a use's contents in the sequential module around it, "
                                         "and this use is not in one", item.locs["inline"], layer=label,
                                         hint="use it inside a module with 'sequential: true', or leave it out"))
            return False
        return True

    def _inputs(self, item: LMap, renamed: dict[str, str], previous: str, name: str) -> list[str]:
        given = item.get("inputs")
        if given is None:
            return [previous]
        names = [given] if isinstance(given, str) else list(given) if isinstance(given, LList) else []
        refs = []
        for ref in names:
            if isinstance(ref, str) and ref in renamed:
                refs.append(renamed[ref])
            else:
                # an unknown or later name: keep it, so that validation reports it where it was written
                refs.append(ref if isinstance(ref, str) else str(ref))
        return refs

    def _use(self, item: LMap, scoped: str, input_refs: list[str], out: LList, depth: int, where: Location, *,
             inline: tuple[list[int], list | None, dict[str, str] | None] | None = None) -> str:
        """Expand one use of ``input_refs`` (as many as the module declares inputs); ``scoped`` is
        its scope, or for an ``inline`` use the enclosing sequential module's scope, with that
        module's (counter, children, members)."""
        input_ref = input_refs[0]
        module = item["module"]
        name = scoped if inline is None else f"{scoped}{item.get('name')}"  # problems name the use by its scope
        found = format_problems(ModuleUseFormat, item, "a use of a module", item.loc or where, layer=name,
                                checked_elsewhere=("when", "inline"))
        self.problems += found
        if not isinstance(module, str):  # reported with the use's other keys
            return input_ref
        definition = self.definitions.get(module)
        if definition is None:
            hint = self.suggest(str(module), self.definitions) or (
                f"modules: {listing(self.definitions)}" if self.definitions else "declare it under 'modules:'")
            self.problems.append(Problem(f"there is no module named {module!r}", item.locs["module"], layer=name,
                                         hint=hint))
            return input_ref
        if depth >= MAX_NESTING:
            raise SpecError.single(f"modules nest more than {MAX_NESTING} deep (a module that uses itself?)",
                                   item.locs["module"], layer=name)
        repeat = item.get("repeat")
        if any(problem.location == item.locs.get("repeat") for problem in found):
            return input_ref
        given = self._mapping(item, "params")
        first = self._mapping(item, "first")
        if "first" in item and repeat is None:
            self.problems.append(Problem("'first' sets params of the first repetition, so it needs 'repeat'",
                                         item.locs["first"], layer=name, hint="add repeat: N, or put them in params"))
        names = self._repetition_names(item, repeat, name)
        if inline is not None and "names" in item:
            self.problems.append(Problem("an inline use's repetitions are numbered in the sequence around it, so "
                                         "they take no 'names'", item.locs["names"], layer=name,
                                         hint="leave out 'names' or 'inline'"))
        output = input_ref
        for r in range(repeat or 1):
            if inline is None:
                path = f"{scoped}.{names[r]}" if repeat is not None else scoped
            elif definition.sequential:
                path = name  # its layers join the enclosing sequence, so the use itself has no scope
            else:
                counter, children, members = inline
                path = f"{scoped}{counter[0]}"
                counter[0] += 1
                if children is not None:
                    children.append((path.rsplit(".", 1)[-1], item))
                if members is not None:
                    members[path.rsplit(".", 1)[-1]] = path
            given_here = {key: value.value(r, self.scope_values[-1], self.problems, name)
                          if isinstance(value, PerRepetition) else value
                          for key, value in {**given, **(first if r == 0 else {})}.items()}
            params = self._params(definition, given_here, item, name)
            body = copy_tree(definition.layers)
            lookup = {**self.global_params, **params}
            before = len(self.problems)
            self.substitute(body, lookup, self.problems, path)
            failed = frozenset(p.location for p in self.problems[before:])
            self.scope_values.append(lookup)  # where the body's own uses evaluate `repetition`
            try:
                output = self._expand_body(definition, body, item, scoped, path, output, input_refs, out, depth,
                                           inline, repeat, params, failed, where)
            finally:
                self.scope_values.pop()
        return output

    def _expand_body(self, definition: ModuleDefinition, body: LList, item: LMap, scoped: str, path: str,
                     output: str, input_refs: list[str], out: LList, depth: int, inline, repeat: int | None,
                     params: dict[str, Any], failed: frozenset, where: Location) -> str:
        """One repetition's body, substituted, expanded into ``out``; returns its output."""
        if inline is not None and definition.sequential:
            counter, children, members = inline
            return self.expand(body, scoped, output, out, sequential=True, depth=depth + 1, members=members,
                               counter=counter, children=children, failed=failed)
        named_inputs = dict(zip(definition.inputs, input_refs, strict=True)) \
            if definition.inputs != [NETWORK_INPUT] else None
        instance = Instance(path, definition.name, params, output, output, item.loc or where,
                            group=scoped if repeat is not None and inline is None else None,
                            inputs=list(named_inputs.values()) if named_inputs else [])
        if definition.sequential and any(isinstance(layer, LMap) and layer.get("inline") is True
                                         for layer in definition.layers):
            instance.children = []
        self.instances.append(instance)
        result = self.expand(body, f"{path}.", output, out, sequential=definition.sequential, depth=depth + 1,
                             members=instance.members, children=instance.children, failed=failed,
                             scope_inputs=named_inputs)
        instance.output = result
        instance.present = {layer["name"]: layer.get("when", True) is not False
                            for layer in body if isinstance(layer, LMap) and isinstance(layer.get("name"), str)}
        return result

    def _repetition_names(self, item: LMap, repeat: int | None, name: str) -> list[str]:
        """Each repetition's name in its scope: 0, 1, ... or the ``names`` pattern's."""
        numbers = [str(r) for r in range(repeat or 1)]
        pattern = item.get("names")
        if pattern is None:
            return numbers
        where = item.locs["names"]
        hint = ("names: denselayer{n} gives denselayer1, denselayer2, ...; {i} counts from 0; letters, digits, "
                "'_' and '-', starting with a letter")
        if repeat is None:
            self.problems.append(Problem("'names' names the repetitions, so it needs 'repeat'", where, layer=name,
                                         hint="add repeat: N, or leave 'names' out"))
            return numbers
        if not isinstance(pattern, str) or ("{n}" in pattern) == ("{i}" in pattern):
            self.problems.append(Problem(f"'names' must be a pattern with one of {{n}} or {{i}}, got {pattern!r}",
                                         where, layer=name, hint=hint))
            return numbers
        names = [pattern.replace("{n}", str(r + 1)).replace("{i}", str(r)) for r in range(repeat)]
        if not all(REPETITION_NAME.match(n) for n in names):
            self.problems.append(Problem(f"'names: {pattern}' does not give valid names ({names[0]!r})", where,
                                         layer=name, hint=hint))
            return numbers
        return names

    @staticmethod
    def _mapping(item: LMap, key: str) -> dict[str, Any]:
        """``params`` or ``first`` of a use (one that is no mapping was reported with its keys)."""
        value = item.get(key)
        return dict(value) if isinstance(value, LMap) else {}

    def _params(self, definition: ModuleDefinition, given: dict[str, Any], item: LMap, name: str) -> dict[str, Any]:
        """The definition's params for one repetition (a mistake shared by the repetitions is
        reported once)."""
        resolved = {}
        meant = set()  # required params a misspelt key was probably meant as
        for key in given:
            if key not in definition.params:
                in_first = isinstance(item.get("first"), LMap) and key in item["first"]
                where = item.locs.get("first" if in_first else "params", item.loc)
                hint = self.suggest(key, definition.params)
                meant.add(closest_name(key, definition.params))
                if hint is None:
                    hint = f"its params: {listing(definition.params)}" if definition.params else "it has no params"
                self.problems.append(Problem(f"module '{definition.name}' has no param '{key}'", where,
                                             layer=name, hint=hint))
        for key, default in definition.params.items():
            value = given.get(key, default)
            if value is None and key not in meant:  # (a misspelling of it is reported already)
                self.problems.append(Problem(f"module '{definition.name}' needs a value for its param '{key}'",
                                             item.locs.get("params", item.loc), layer=name,
                                             hint=f"params: {{{key}: ...}}"))
            resolved[key] = value
        return resolved


def previous_flat(out: LList, scope_input: str) -> str:
    """What a layer without `inputs` takes in the flat list: the layer before it."""
    return out[-1]["name"] if out else scope_input


def _located_list(names: list[str], where: Location, locs: list[Location] | None = None) -> LList:
    out = LList(where)
    out.extend(names)
    out.locs[:] = list(locs) if locs is not None and len(locs) == len(names) else [where] * len(names)
    return out

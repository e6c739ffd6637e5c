"""From a YAML file to one plain document: ``extends:`` variants merged (netspec.language.extends),
``--set`` overrides applied and ``${params}`` substituted (netspec.language.params), modules
expanded (netspec.language.modules), and a table from every value's path to the file, line and
column it came from (so pydantic's and the checker's errors can point back into the YAML)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netspec.errors import Location, Problem, SpecError, Suggestions, listing
from netspec.language.catalog import spec_path
from netspec.language.expressions import Expression, ExpressionError, free_names
from netspec.language.extends import layer_lists, load_with_bases, name_layers_in
from netspec.language.modules import MAX_LAYERS, Expander, Expansion, read_definitions, uses_modules
from netspec.language.params import (
    PARAM_REF,
    REPETITION,
    REPETITION_HINT,
    Budget,
    OverridesArg,
    PerRepetition,
    apply_overrides,
    overrides_from,
    parse_references,
    resolve_params,
    substitute,
)
from netspec.language.yamlio import LList, LMap, child_loc
from netspec.layers.base import NETWORK_INPUT

Path_ = tuple[Any, ...]


@dataclass
class LoadedSpec:
    """A fully resolved spec document and where each of its values was written."""

    data: dict[str, Any]
    locations: dict[Path_, Location]
    file: str
    chain: list[str] = field(default_factory=list)  # the spec and the bases it extends, in order
    # the document before modules were expanded (what a run keeps as its resolved spec), and the
    # modules and their uses; without modules, the document is ``data`` and these are empty
    document: dict[str, Any] | None = None
    modules: Any = None  # netspec.language.modules.Expansion
    overrides: list[str] = field(default_factory=list)  # what --set (or the API) changed, as KEY=VALUE
    # the ${...} each value was computed from, by where it is written (a value inside a module is
    # computed once per use, from the one expression written there): the expression of a whole
    # value (``num_classes``, ``planes * 4``) parsed, or text with references inside as written
    expressions: dict[Location, Expression | str] = field(default_factory=dict)

    def params_named(self) -> dict[str, set[Location]]:
        """Each param any ${...} names, and where."""
        named: dict[str, set[Location]] = {}
        for where, written in self.expressions.items():
            for name in written.names if isinstance(written, Expression) else _names_in_text(written):
                named.setdefault(name, set()).add(where)
        return named

    def location(self, path: Path_) -> Location:
        """The most precise known location for ``path`` (walking up to a parent when needed)."""
        path = tuple(path)
        while path:
            if path in self.locations:
                return self.locations[path]
            path = path[:-1]
        return self.locations.get((), Location(self.file, 1, 1))


def _names_in_text(text: str) -> set[str]:
    """The params the references inside a text name (a reference that does not parse was reported
    when it was evaluated)."""
    names: set[str] = set()
    for match in PARAM_REF.finditer(text):
        try:
            names |= free_names(match.group(1))
        except ExpressionError:
            continue
    return names


def load_spec_document(path: str | Path, overrides: OverridesArg = None) -> LoadedSpec:
    """Load ``path`` (a file, or the name of a packaged spec: netspec.language.catalog) with its bases, params
    and ``--set`` overrides; raise SpecError on problems."""
    path = spec_path(path)
    display = str(path)
    root_dir = path.resolve().parent
    tree = load_with_bases(path, display, root_dir, stack=[])
    chain = list(getattr(tree, "chain", [display]))
    given = overrides_from(overrides) if overrides else []
    if given:
        apply_overrides(tree, given)
    expressions: dict[Location, Expression | str] = {}
    resolve_params(tree, expressions)
    _refuse_too_many_layers(tree)
    document = _to_plain(tree, (), tree.loc, {})
    expansion = _expand_modules(tree, expressions) if uses_modules(tree) else None
    locations: dict[Path_, Location] = {}
    data = _to_plain(tree, (), tree.loc, locations)
    return LoadedSpec(data=data, locations=locations, file=display, chain=chain, document=document,
                      modules=expansion, overrides=[override.shown() for override in given], expressions=expressions)


def _refuse_too_many_layers(tree: LMap) -> None:
    """A bound on the written layers, checked before any per-layer work (the expander bounds what
    modules expand to)."""
    count = sum(len(layers) for layers in layer_lists(tree))
    if count > MAX_LAYERS:
        raise SpecError.single(f"the spec has {count:,} layers, more than the {MAX_LAYERS:,} netspec checks",
                               tree.locs.get("layers", tree.locs.get("blocks", tree.loc)),
                               hint="the largest published networks have about a thousand; is this the right file?")


def _expand_modules(tree: LMap, expressions: dict[Location, Expression | str]) -> Expansion:
    """Replace module uses in ``layers`` by their layers, scoped (netspec.language.modules)."""
    definitions = read_definitions(tree)
    global_params = dict(tree.get("params") or {})
    problems: list[Problem] = []
    budget = Budget(expressions)

    def substitute_use(node: Any, values: dict[str, Any], found: list[Problem], scope: str) -> None:
        suggest = Suggestions()

        def lookup(name: str, loc: Location) -> Any:
            if name not in values:
                hint = suggest(name, values) or "declare it under the module's 'params:' or the spec's"
                if name == REPETITION:
                    hint = REPETITION_HINT
                found.append(Problem(f"undefined param '${{{name}}}'", loc, hint=hint))
                return None
            return values[name]

        before = len(found)
        for i, item in enumerate(node):
            node[i] = substitute(item, child_loc(node, i, node.loc), lookup, found, budget=budget)
        # named by their scoped layer (layer1.0.conv1), so one mistake in a module reads as one problem
        found[before:] = [dataclasses.replace(p, layer=f"{scope}.{p.layer}" if p.layer else scope)
                          for p in found[before:]]

    for definition in definitions.values():  # defaults may use the spec's params
        name_layers_in(definition.layers)
        parse_references(definition.layers)
        for key in list(definition.params):
            definition.params[key] = substitute(definition.params[key], definition.params.locs[key],
                                                _default_lookup(definition, global_params, problems), problems,
                                                budget=budget)
    if problems:  # a failed default would also read as a missing value at every use
        raise SpecError(problems)
    layers = tree.get("layers")
    if isinstance(tree.get("blocks"), LList) and any(
            isinstance(layer, LMap) and "module" in layer for block in tree["blocks"] if isinstance(block, LMap)
            for layer in (block.get("layers") or [])):
        raise SpecError.single("modules are used in a flat 'layers:' list, not inside blocks",
                               tree.locs["blocks"], hint="write the network as 'layers:' with module uses")
    expander = Expander(definitions, global_params, substitute_use)
    if isinstance(layers, LList):
        flat = LList(layers.loc)
        expander.expand(layers, "", NETWORK_INPUT, flat, top=True)
        tree["layers"] = flat
    expander.report_long_names()
    problems += expander.problems
    if problems:
        raise SpecError(problems)
    tree.pop("modules", None)
    return Expansion(definitions, expander.instances, expander.top_level)


def _default_lookup(definition, global_params: dict[str, Any], problems: list[Problem]):
    """Looks up a param named in a module param's default: only the spec's params are in scope there."""
    suggest = Suggestions()

    def lookup(name: str, loc: Location) -> Any:
        if name in global_params:
            return global_params[name]
        if name in definition.params:
            hint = "a default is worked out before the module is used, so it can name the spec's params only"
        elif close := suggest(name, global_params):
            hint = close
        elif suggest(name, definition.params):
            hint = "a default can name the spec's params only, not the module's own"
        else:
            hint = (f"the spec's params: {listing(global_params)}" if global_params
                    else "declare it under the spec's 'params:'")
        problems.append(Problem(f"undefined param '${{{name}}}' in the default of module "
                                f"'{definition.name}'", loc, hint=hint))
        return None
    return lookup


# --- plain data and its locations ---------------------------------------------------------------

def _to_plain(value: Any, path: Path_, loc: Location, table: dict[Path_, Location]) -> Any:
    table[path] = loc
    if isinstance(value, LMap):
        return {k: _to_plain(v, (*path, k), value.locs.get(k, value.loc), table) for k, v in value.items()}
    if isinstance(value, LList):
        return [_to_plain(v, (*path, i), child_loc(value, i, value.loc), table) for i, v in enumerate(value)]
    if isinstance(value, PerRepetition):  # a repeated use's param, as written: a run's spec.yaml reads back
        return value.written
    return value

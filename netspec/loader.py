"""From a YAML file to one plain document: ``extends:`` variants merged, ``${params}`` substituted,
``--set`` overrides applied, and a table from every value's path to the file, line and column it
came from (so pydantic's and the checker's errors can point back into the YAML).

Variant rules (``extends: base.yaml``, relative to the variant's folder and inside the spec tree):

* top-level keys replace the base's, except mappings (``params``, ``input``, ``data``,
  ``training``), which merge key by key;
* ``patch: {layer_name: {field: value}}`` changes fields of named base layers (``null`` removes a
  field, so it falls back to its default);
* ``replace: {layer_name: layer or [layers]}`` puts new layers where a base layer was;
* ``insert: [{before | after: layer_name, layers: [...]}]`` adds layers next to a base layer;
* ``remove: [layer_name, ...]`` deletes base layers (and says which layer would lose its input).

They apply in that order: patch, replace, insert, remove.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from netspec.catalog import spec_path
from netspec.errors import Location, Problem, SpecError, Suggestions, listing
from netspec.expressions import Expression, ExpressionError, free_names, parse
from netspec.layers.base import NETWORK_INPUT
from netspec.modules import MAX_LAYERS, Expander, Expansion, read_definitions, uses_modules
from netspec.yamlio import MAX_DEPTH, LList, LMap, child_loc, parse_scalar, parse_yaml_text, read_yaml_file

Path_ = tuple[Any, ...]
# A reference holds no '$', '{' or '}': the match then never runs past the next '$' or '{', so
# text full of unclosed "${" is scanned in linear time.
_PARAM_REF = re.compile(r"\$\{([^${}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VARIANT_ONLY_KEYS = ("extends", "patch", "replace", "insert", "remove")
MAX_EXTENDS_DEPTH = 16
# ${param} expansion is bounded like alias expansion: one string, all of them together, and how
# deeply params may refer to params (13 params each holding ten references to the next would
# otherwise ask for ~10**13 characters from an 881-byte file).
MAX_EXPANDED_CHARS = 1 << 16  # one string after substitution; a description is at most 4,000
MAX_EXPANSION_TOTAL = 1 << 20  # characters produced by substitution in the whole document
MAX_PARAM_DEPTH = 32


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
    modules: Any = None  # netspec.modules.Expansion
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
    for match in _PARAM_REF.finditer(text):
        try:
            names |= free_names(match.group(1))
        except ExpressionError:
            continue
    return names


def load_spec_document(path: str | Path, overrides: OverridesArg = None) -> LoadedSpec:
    """Load ``path`` (a file, or the name of a packaged spec: netspec.catalog) with its bases, params
    and ``--set`` overrides; raise SpecError on problems."""
    path = spec_path(path)
    display = str(path)
    root_dir = path.resolve().parent
    tree = _load_with_bases(path, display, root_dir, stack=[])
    chain = list(getattr(tree, "chain", [display]))
    given = overrides_from(overrides) if overrides else []
    if given:
        _apply_overrides(tree, given)
    expressions: dict[Location, Expression | str] = {}
    _resolve_params(tree, expressions)
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
    count = sum(len(layers) for layers in _layer_lists(tree))
    if count > MAX_LAYERS:
        raise SpecError.single(f"the spec has {count:,} layers, more than the {MAX_LAYERS:,} netspec checks",
                               tree.locs.get("layers", tree.locs.get("blocks", tree.loc)),
                               hint="the largest published networks have about a thousand; is this the right file?")


def _expand_modules(tree: LMap, expressions: dict[Location, Expression | str]) -> Expansion:
    """Replace module uses in ``layers`` by their layers, scoped (netspec.modules)."""
    definitions = read_definitions(tree)
    global_params = dict(tree.get("params") or {})
    problems: list[Problem] = []
    budget = _Budget(expressions)

    def substitute(node: Any, values: dict[str, Any], found: list[Problem], scope: str) -> None:
        suggest = Suggestions()

        def lookup(name: str, loc: Location) -> Any:
            if name not in values:
                hint = suggest(name, values) or "declare it under the module's 'params:' or the spec's"
                found.append(Problem(f"undefined param '${{{name}}}'", loc, hint=hint))
                return None
            return values[name]

        before = len(found)
        for i, item in enumerate(node):
            node[i] = _substitute(item, child_loc(node, i, node.loc), lookup, found, budget=budget)
        # named by their scoped layer (layer1.0.conv1), so one mistake in a module reads as one problem
        found[before:] = [dataclasses.replace(p, layer=f"{scope}.{p.layer}" if p.layer else scope)
                          for p in found[before:]]

    for definition in definitions.values():  # defaults may use the spec's params
        _name_layers_in(definition.layers)
        _parse_references(definition.layers)
        for key in list(definition.params):
            definition.params[key] = _substitute(definition.params[key], definition.params.locs[key],
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
    expander = Expander(definitions, global_params, substitute)
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


# --- extends -----------------------------------------------------------------------------------

def _load_with_bases(path: Path, display: str, root_dir: Path, stack: list[Path]) -> LMap:
    tree = read_yaml_file(path, display)
    if not isinstance(tree, LMap):
        raise SpecError.single("a spec must be a mapping (name:, input:, layers:, ...)",
                               getattr(tree, "loc", Location(display, 1, 1)))
    _name_unnamed_layers(tree)
    base_ref = tree.get("extends")
    if base_ref is None:
        for key in _VARIANT_ONLY_KEYS[1:]:
            if key in tree:
                raise SpecError.single(f"'{key}:' only makes sense in a variant", tree.locs[key],
                                       hint="add 'extends: BASE.yaml' or write the layers out in full")
        tree.chain = [display]
        return tree

    ref_loc = tree.locs["extends"]
    base_path = _resolve_base_path(base_ref, path, root_dir, ref_loc)
    real = base_path.resolve()
    if real in stack or real == path.resolve():
        cycle = " -> ".join(p.name for p in [*stack, path.resolve(), real])
        raise SpecError.single(f"'extends' forms a cycle: {cycle}", ref_loc,
                               hint="a base spec must not extend its variants")
    if len(stack) >= MAX_EXTENDS_DEPTH:
        raise SpecError.single(f"'extends' chain is deeper than {MAX_EXTENDS_DEPTH}", ref_loc)
    try:
        found = base_path.is_file()
    except OSError as exc:  # a name too long for the file system
        raise SpecError.single(f"base spec cannot be opened: {base_ref!r} ({exc.strerror or exc})",
                               ref_loc, hint="the path is relative to the folder of the spec that extends it") from None
    if not found:
        raise SpecError.single(f"base spec not found: {base_ref!r} (looked for {base_path})", ref_loc,
                               hint="the path is relative to the folder of the spec that extends it")
    base_display = str(Path(display).parent / base_ref)
    base = _load_with_bases(base_path, base_display, root_dir, [*stack, path.resolve()])
    merged = _merge_variant(base, tree)
    merged.chain = [display, *base.chain]
    return merged


def _resolve_base_path(ref: Any, path: Path, root_dir: Path, loc: Location) -> Path:
    if not isinstance(ref, str) or not ref.strip():
        raise SpecError.single("'extends' must be the path of a base spec, like 'alexnet.yaml'", loc)
    if not ref.isprintable():
        raise SpecError.single(f"'extends' holds a control or invisible character: {ref!r}", loc,
                               hint="write the base spec's file name as plain text, like 'alexnet.yaml'")
    if "://" in ref or ref.startswith(("http:", "https:", "file:")):
        raise SpecError.single(f"'extends' must be a local file, not a URL: {ref!r}", loc,
                               hint="copy the base spec next to the variant")
    if Path(ref).is_absolute():
        raise SpecError.single(f"'extends' must be a relative path, not {ref!r}", loc,
                               hint="write the base's path relative to this spec's folder")
    try:
        candidate = (path.parent / ref).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a name too long
        raise SpecError.single(f"'extends' path cannot be resolved: {ref!r} ({exc})", loc) from None
    if not candidate.is_relative_to(root_dir):
        raise SpecError.single(f"'extends' points outside the folder of the spec being loaded: {ref!r}", loc,
                               hint="keep a variant and its base in the same folder tree")
    return path.parent / ref


def _merge_variant(base: LMap, variant: LMap) -> LMap:
    problems: list[Problem] = []
    merged = _copy(base)
    for key, value in variant.items():
        if key in _VARIANT_ONLY_KEYS:
            continue
        if key in ("layers", "blocks"):
            # a variant that writes its layers out replaces the base's layer structure entirely
            merged.pop("layers", None)
            merged.pop("blocks", None)
        if isinstance(value, LMap) and isinstance(merged.get(key), LMap):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
        merged.locs[key] = variant.locs[key]
    patches = variant.get("patch")
    if patches is not None:
        problems += _apply_patches(merged, patches, variant.locs["patch"])
    replacements = variant.get("replace")
    if replacements is not None:
        problems += _apply_replacements(merged, replacements, variant.locs["replace"])
    insertions = variant.get("insert")
    if insertions is not None:
        problems += _apply_insertions(merged, insertions, variant.locs["insert"])
    removals = variant.get("remove")
    if removals is not None:
        problems += _apply_removals(merged, removals, variant.locs["remove"])
    if problems:
        raise SpecError(problems)
    _name_unnamed_layers(merged)  # layers a replace or insert brought without a name
    return merged


def _deep_merge(base: LMap, override: LMap) -> LMap:
    out = _copy(base)
    for key, value in override.items():
        if isinstance(value, LMap) and isinstance(out.get(key), LMap):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
        out.locs[key] = override.locs[key]
    return out


def _copy(tree: LMap) -> LMap:
    out = LMap(tree.loc)
    out.update(tree)
    out.locs.update(tree.locs)
    return out


def _layer_lists(tree: LMap) -> list[LList]:
    """Every layer list in a spec: the flat ``layers:`` or each block's ``layers:``."""
    lists = []
    if isinstance(tree.get("layers"), LList):
        lists.append(tree["layers"])
    if isinstance(tree.get("blocks"), LList):
        lists += [b["layers"] for b in tree["blocks"] if isinstance(b, LMap) and isinstance(b.get("layers"), LList)]
    return lists


def _layers_by_name(tree: LMap) -> dict[str, tuple[LList, int]]:
    found = {}
    for layers in _layer_lists(tree):
        for i, layer in enumerate(layers):
            if isinstance(layer, LMap) and isinstance(layer.get("name"), str):
                found[layer["name"]] = (layers, i)
    return found


def _apply_patches(tree: LMap, patches: Any, loc: Location) -> list[Problem]:
    if not isinstance(patches, LMap):
        return [Problem("'patch' must map layer names to the fields to change", loc,
                        hint="patch: {conv1: {padding: 1}}")]
    problems = []
    by_name = _layers_by_name(tree)
    suggest = Suggestions()
    for name, changes in patches.items():
        where = patches.locs[name]
        if name not in by_name:
            hint = suggest(name, by_name) or f"the base has: {listing(by_name)}"
            problems.append(Problem(f"'patch' names a layer the base does not have: '{name}'", where, hint=hint))
            continue
        if not isinstance(changes, LMap):
            problems.append(Problem(f"patch for '{name}' must be a mapping of fields", where))
            continue
        layers, index = by_name[name]
        layer = _copy(layers[index])
        for key, value in changes.items():
            if value is None:
                layer.pop(key, None)
            else:
                layer[key] = value
                layer.locs[key] = changes.locs[key]
        layers[index] = layer
    return problems


def _new_layers(value: Any, where: Location, what: str) -> tuple[list[Any], list[Location]] | Problem:
    """A layer mapping or a list of them, with their locations."""
    if isinstance(value, LMap):
        return [value], [value.loc or where]
    if isinstance(value, LList) and value and all(isinstance(item, LMap) for item in value):
        return list(value), list(value.locs)
    return Problem(f"{what} must be a layer or a list of layers", where,
                   hint="e.g. {name: bn1, type: batchnorm2d} or [{...}, {...}]")


def _apply_replacements(tree: LMap, replacements: Any, loc: Location) -> list[Problem]:
    if not isinstance(replacements, LMap):
        return [Problem("'replace' must map base layer names to their new layers", loc,
                        hint="replace: {lrn1: {name: bn1, type: batchnorm2d}}")]
    problems: list[Problem] = []
    suggest = Suggestions()
    by_name = _layers_by_name(tree)
    instead: _Spliced = {}
    for name, value in replacements.items():
        where = replacements.locs[name]
        if name not in by_name:
            hint = suggest(name, by_name) or f"the base has: {listing(by_name)}"
            problems.append(Problem(f"'replace' names a layer the base does not have: '{name}'", where, hint=hint))
            continue
        new = _new_layers(value, where, f"the replacement for '{name}'")
        if isinstance(new, Problem):
            problems.append(new)
            continue
        instead[name] = new
    _splice(tree, instead=instead)
    return problems


def _apply_insertions(tree: LMap, insertions: Any, loc: Location) -> list[Problem]:
    """Insertions name layers of the base (or put there by 'replace'); several at one layer keep
    the order they are written in."""
    example = "insert: [{after: conv1, layers: [{name: bn1, type: batchnorm2d}]}]"
    if not isinstance(insertions, LList):
        return [Problem("'insert' must be a list of insertions", loc, hint=example)]
    problems: list[Problem] = []
    suggest = Suggestions()
    by_name = _layers_by_name(tree)
    sides: dict[str, _Spliced] = {"before": {}, "after": {}}
    for entry, where in zip(insertions, insertions.locs, strict=True):
        if not isinstance(entry, LMap) or sorted(k for k in entry if k != "layers") not in (["after"], ["before"]) \
                or "layers" not in entry:
            problems.append(Problem("each insertion names one of 'before' or 'after' (a base layer) and "
                                    "its 'layers'", where, hint=example))
            continue
        side = "after" if "after" in entry else "before"
        anchor = entry[side]
        if not isinstance(anchor, str) or anchor not in by_name:
            hint = suggest(str(anchor), by_name) or f"the base has: {listing(by_name)}"
            problems.append(Problem(f"'insert' names a layer the base does not have: '{anchor}'",
                                    entry.locs[side], hint=hint))
            continue
        new = _new_layers(entry["layers"], entry.locs["layers"], "'layers' of an insertion")
        if isinstance(new, Problem):
            problems.append(new)
            continue
        layers, locs = sides[side].setdefault(anchor, ([], []))
        layers += new[0]
        locs += new[1]
    _splice(tree, before=sides["before"], after=sides["after"])
    return problems


_Spliced = dict[str | None, tuple[list[Any], list[Location]]]  # by layer name; None (no name) finds nothing


def _splice(tree: LMap, *, before: _Spliced | None = None, instead: _Spliced | None = None,
            after: _Spliced | None = None) -> None:
    """Rebuild each layer list once, with new layers before, instead of or after named layers: one
    pass however many edits, so a variant with thousands of them stays linear."""
    before, instead, after = before or {}, instead or {}, after or {}
    for layers in _layer_lists(tree):
        items: list[Any] = []
        locs: list[Location] = []
        for layer, where in zip(layers, layers.locs, strict=True):
            name = layer.get("name") if isinstance(layer, LMap) else None
            name = name if isinstance(name, str) else None
            for edits in (before.get(name), instead.get(name, ([layer], [where])), after.get(name)):
                if edits is not None:
                    items += edits[0]
                    locs += edits[1]
        layers[:] = items
        layers.locs[:] = locs


def _apply_removals(tree: LMap, removals: Any, loc: Location) -> list[Problem]:
    if not isinstance(removals, LList) or not all(isinstance(n, str) for n in removals):
        return [Problem("'remove' must be a list of layer names", loc, hint="remove: [lrn1, lrn2]")]
    problems = []
    by_name = _layers_by_name(tree)
    doomed: set[str] = set()
    suggest = Suggestions()
    for name, where in zip(removals, removals.locs, strict=True):
        if name not in by_name or name in doomed:
            left = [n for n in by_name if n not in doomed] if name in doomed else by_name
            hint = suggest(name, left) or f"the base has: {listing(left)}"
            problems.append(Problem(f"'remove' names a layer the base does not have: '{name}'", where, hint=hint))
            continue
        doomed.add(name)
    for layers in _layer_lists(tree):  # one pass, so removing many layers stays linear
        keep = [i for i, layer in enumerate(layers) if not (isinstance(layer, LMap) and layer.get("name") in doomed)]
        kept, kept_locs = [layers[i] for i in keep], [layers.locs[i] for i in keep]
        layers[:] = kept
        layers.locs[:] = kept_locs
    where_removed = dict(zip(removals, removals.locs, strict=True))
    for layers in _layer_lists(tree):  # a layer that names a removed one as its input would lose it
        for layer in layers:
            named = layer.get("inputs") if isinstance(layer, LMap) else None
            for name in ([named] if isinstance(named, str) else named if isinstance(named, list) else []):
                if name in doomed:
                    problems.append(Problem(
                        f"removing '{name}' leaves '{layer.get('name')}' (line {layer.loc.line}) without its input",
                        where_removed[name], hint=f"also change the inputs of '{layer.get('name')}' with 'patch', "
                        "or replace the layer instead of removing it"))
    return problems


def _name_unnamed_layers(tree: LMap) -> None:
    """Give every unnamed layer a stable name, ``<type>_<n>``, so errors, patches and generated code
    can refer to it. Explicit names win; generated ones skip any name already taken."""
    _name_layers_in(*_layer_lists(tree))


def _name_layers_in(*layer_lists: LList, taken: set[str] | None = None) -> None:
    """Name the unnamed layers of these lists, which share one namespace (a module's layers have
    their own; a module use is named after its module)."""
    taken = {layer["name"] for layers in layer_lists for layer in layers
             if isinstance(layer, LMap) and isinstance(layer.get("name"), str)}  # a bad name is reported later
    counters: dict[str, int] = {}
    for layers in layer_lists:
        for layer in layers:
            if not isinstance(layer, LMap) or "name" in layer:
                continue
            kind = layer.get("type", layer.get("module"))
            kind = kind if isinstance(kind, str) and _IDENTIFIER.match(kind) and kind[0].isalpha() else "layer"
            while True:
                counters[kind] = counters.get(kind, 0) + 1
                candidate = f"{kind}_{counters[kind]}"
                if candidate not in taken:
                    break
            taken.add(candidate)
            layer["name"] = candidate
            layer.locs["name"] = layer.loc


# --- --set and ${params} -----------------------------------------------------------------------

@dataclass(frozen=True)
class Override:
    """One value set from outside the file: ``key`` is a param name or a dotted field path."""

    key: str
    value: Any
    loc: Location
    text: str = ""  # as given: KEY=VALUE

    def shown(self) -> str:
        return self.text or f"{self.key}={json.dumps(self.value)}"


OverridesArg = Sequence[str] | Mapping[str, Any] | None


def overrides_from(overrides: OverridesArg, *, label: str = "--set") -> list[Override]:
    """Overrides as the command line gives them (``["num_classes=10"]``, each value read as a YAML
    scalar) or as Python gives them (``{"num_classes": 10}``, values taken as they are). ``label``
    names the source in messages: ``--set`` for the command line, ``overrides`` for the Python API."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return _python_overrides(overrides)
    if not isinstance(overrides, (str, bytes)) and all(isinstance(item, Override) for item in overrides):
        return cast(list[Override], list(overrides))  # all() above narrows nothing for mypy
    if isinstance(overrides, (str, bytes)) or not all(isinstance(item, str) for item in overrides):
        raise SpecError.single(f"{label} must be a mapping of keys to values or a list of 'KEY=VALUE' strings",
                               Location(label), hint="e.g. overrides={'num_classes': 10, 'training.epochs': 5}")
    found, problems = [], []
    for item in overrides:
        loc = Location(f"{label} {item}" if label == "--set" else f"{label} entry {item!r}")
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            example = "--set num_classes=10" if label == "--set" else "'num_classes=10', or a dict"
            problems.append(Problem(f"{label} needs KEY=VALUE", loc, hint=f"e.g. {example}"))
            continue
        try:
            value = parse_scalar(text)
        except SpecError as exc:
            problems.append(Problem(f"cannot parse the value: {exc.problems[0].message}", loc))
            continue
        found.append(Override(key, value, loc, item.strip()))
    if problems:
        raise SpecError(problems)
    return found


def _python_overrides(overrides: Mapping[str, Any]) -> list[Override]:
    """A mapping's values go through JSON and the spec reader, so they meet a file's rules (finite
    numbers, bounded integers and nesting) and carry a location for later messages."""
    found, problems = [], []
    for key, value in overrides.items():
        loc = Location(f"overrides[{key!r}]")
        if not isinstance(key, str) or not key.strip():
            problems.append(Problem("an override's key must be a param name or a dotted path", loc,
                                    hint="e.g. {'num_classes': 10, 'training.epochs': 5}"))
            continue
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:  # a NaN or infinity; an object JSON has no form for
            what = "holds a number that is not finite" if isinstance(exc, ValueError) else f"cannot be written in a " \
                f"spec ({type(exc).__name__}: {exc})"
            problems.append(Problem(f"the value {what}", loc,
                                    hint="give a number, text, True/False, None, or a list or dict of these"))
            continue
        try:
            found.append(Override(key.strip(), parse_yaml_text(text, str(loc)), loc, f"{key.strip()}={text}"))
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    return found


def _apply_overrides(tree: LMap, overrides: list[Override]) -> None:
    problems = []
    params = tree.get("params")
    suggest = Suggestions()
    for override in overrides:
        key, value, loc = override.key, override.value, override.loc
        if key.count(".") >= MAX_DEPTH:
            problems.append(Problem(f"the key is nested deeper than {MAX_DEPTH} levels", loc,
                                    hint="a spec's fields are a few levels deep, e.g. training.optimizer.lr"))
            continue
        if "." not in key:
            if not isinstance(params, LMap) or key not in params:
                names = list(params) if isinstance(params, LMap) else []
                hint = suggest(key, names) or (
                    f"the spec's params are: {listing(names)}" if names else "the spec declares no params")
                hint += "; use a dotted path such as training.epochs=5 for other fields"
                problems.append(Problem(f"no param named '{key}'", loc, hint=hint))
                continue
            params[key] = value
            params.locs[key] = loc
            continue
        *parents, last = key.split(".")
        node: Any = tree
        for part in parents:
            if not isinstance(node, LMap):
                break
            if part not in node:
                node[part] = LMap(loc)
                node.locs[part] = loc
            node = node[part]
        if not isinstance(node, LMap):
            problems.append(Problem(f"cannot set '{key}': '{'.'.join(parents)}' is not a mapping", loc))
            continue
        node[last] = value
        node.locs[last] = loc
    if problems:
        raise SpecError(problems)


def _resolve_params(tree: LMap, expressions: dict[Location, Expression | str]) -> None:
    problems: list[Problem] = []
    raw = tree.get("params", LMap(tree.loc))
    if not isinstance(raw, LMap):
        raise SpecError.single("'params' must be a mapping of names to values", tree.locs["params"],
                               hint="params: {num_classes: 1000}")
    for name in raw:
        if not _IDENTIFIER.match(name):
            problems.append(Problem(f"param name {name!r} is not a valid identifier", raw.locs[name],
                                    hint="use letters, digits and underscores, not starting with a digit"))
    resolved: dict[str, Any] = {}
    budget = _Budget(expressions)
    suggest = Suggestions()

    def resolve_param(name: str, chain: tuple[str, ...]) -> Any:
        if name in resolved:
            return resolved[name]
        if name in chain:
            cycle = " -> ".join((*chain, name))
            raise SpecError.single(f"param '{name}' refers to itself: {cycle}", raw.locs[name],
                                   hint="give the param a plain value")
        if len(chain) >= MAX_PARAM_DEPTH:
            raise SpecError.single(
                f"param '{chain[0]}' refers to params more than {MAX_PARAM_DEPTH} deep: "
                f"{' -> '.join(chain[:3])} -> ... -> {name}", raw.locs[chain[0]],
                hint="give some of these params plain values")
        value = _substitute(raw[name], raw.locs[name], lambda n, loc: lookup(n, loc, (*chain, name)), problems,
                            budget=budget, owner=f"param '{name}'")
        resolved[name] = value
        return value

    def lookup(name: str, loc: Location, chain: tuple[str, ...] = ()) -> Any:
        if name not in raw:
            hint = suggest(name, raw) or (
                f"defined params: {listing(raw)}" if raw else "declare it under 'params:'")
            problems.append(Problem(f"undefined param '${{{name}}}'", loc, hint=hint))
            return None
        return resolve_param(name, chain)

    for name in list(raw):
        raw[name] = resolve_param(name, ())
    for key in list(tree):
        if key not in ("params", "modules"):  # a module's ${...} are resolved per use (netspec.modules)
            tree[key] = _substitute(tree[key], tree.locs.get(key, tree.loc), lookup, problems, budget=budget)
    if problems:
        raise SpecError(problems)


class _Budget:
    """Characters that ${param} substitution may still produce in this document, and where each
    whole-value expression it evaluated is written (LoadedSpec.expressions)."""

    def __init__(self, expressions: dict[Location, Expression | str] | None = None) -> None:
        self.left = MAX_EXPANSION_TOTAL
        self.expressions = expressions if expressions is not None else {}


def _whole_reference(value: str) -> str | None:
    """What ``${...}`` holds when it is the whole value (which then keeps its type)."""
    whole = _PARAM_REF.fullmatch(value)
    return whole.group(1) if whole and not value.startswith("$$") else None


def _parse_references(node: Any) -> None:
    """Parse the whole-value ``${...}`` of a module's layers once, in place: every use evaluates
    the same tree, and the backends write constructor arguments from it. One that does not parse
    stays text, and is reported at each use, in its scope."""
    items = node.items() if isinstance(node, LMap) else enumerate(node) if isinstance(node, LList) else ()
    for key, value in list(items):
        if isinstance(value, str) and (inner := _whole_reference(value)) is not None:
            try:
                node[key] = parse(inner)
            except ExpressionError:
                continue
        else:
            _parse_references(value)


def _reference(expression: Expression | str, loc: Location, lookup, problems: list[Problem],
               layer: str | None) -> tuple[Any, Expression | None]:
    """The value of one ``${...}`` (a param by name, or arithmetic over params:
    netspec.expressions) and its parsed expression (None where it does not parse)."""
    if isinstance(expression, str):
        try:
            parsed = parse(expression)
        except ExpressionError as exc:
            problems.append(Problem(f"in ${{{expression.strip()}}}: {exc.message}", loc, layer, exc.hint))
            return None, None
    else:
        parsed = expression
    if parsed.tree[0] == "name":  # a param by name keeps its value, whatever its type (a string, a list)
        return lookup(parsed.tree[1], loc), parsed
    try:
        return parsed.evaluate(lambda param: lookup(param, loc)), parsed
    except ExpressionError as exc:
        problems.append(Problem(f"in ${{{parsed.text}}}: {exc.message}", loc, layer, exc.hint))
        return None, parsed


def _substitute(value: Any, loc: Location, lookup, problems: list[Problem], layer: str | None = None, *,
                budget: _Budget, owner: str | None = None) -> Any:
    """Replace ``${name}`` references: a whole-string reference keeps the param's type (an int stays
    an int); a reference inside longer text is formatted into it; ``$${`` is a literal ``${``.

    Text built from references is bounded (MAX_EXPANDED_CHARS each, MAX_EXPANSION_TOTAL in all);
    ``owner`` names what is being expanded (a param) for that error."""
    if isinstance(value, LMap):
        if "type" in value and isinstance(value.get("name"), str):
            layer = value["name"]
        for key in list(value):
            value[key] = _substitute(value[key], value.locs.get(key, value.loc), lookup, problems, layer,
                                     budget=budget, owner=owner)
        return value
    if isinstance(value, LList):
        for i, item in enumerate(value):
            value[i] = _substitute(item, child_loc(value, i, loc), lookup, problems, layer,
                                   budget=budget, owner=owner)
        return value
    if isinstance(value, Expression):  # a module's, parsed when the definition was read
        whole: Expression | str | None = value
    elif not isinstance(value, str) or "${" not in value:
        return value
    else:
        whole = _whole_reference(value)
    before = len(problems)
    if whole is not None:
        result, parsed = _reference(whole, loc, lookup, problems, layer)
        if parsed is not None:
            budget.expressions[loc] = parsed
    else:
        assert isinstance(value, str)
        size = len(value)
        used: list[str] = []

        def replace(match: re.Match) -> str:
            nonlocal size
            start = match.start()
            if start > 0 and value[start - 1] == "$":
                return match.group(0)
            name = match.group(1).strip()
            text = str(_reference(match.group(1), loc, lookup, problems, layer)[0])
            size += len(text)
            if name not in used:
                used.append(name)
            if size > MAX_EXPANDED_CHARS or size > budget.left:
                refs = ", ".join(f"${{{n}}}" for n in used[:3]) + (", ..." if len(used) > 3 else "")
                what = owner or "this value"
                if size > MAX_EXPANDED_CHARS:
                    message = f"{what} expands to more than {MAX_EXPANDED_CHARS:,} characters (through {refs})"
                else:
                    message = (f"{what} takes ${{param}} substitution past {MAX_EXPANSION_TOTAL:,} characters "
                               f"in all (through {refs})")
                raise SpecError.single(message, loc, layer=layer,
                                       hint="a spec never needs this; use fewer or shorter ${param} references")
            return text

        result = _PARAM_REF.sub(replace, value).replace("$${", "${")
        budget.left -= len(result)
        budget.expressions[loc] = value  # text with references inside: as written, ${...} and all
    if layer is not None:
        problems[before:] = [dataclasses.replace(p, layer=layer) for p in problems[before:]]
    return result



# --- plain data and its locations ---------------------------------------------------------------

def _to_plain(value: Any, path: Path_, loc: Location, table: dict[Path_, Location]) -> Any:
    table[path] = loc
    if isinstance(value, LMap):
        return {k: _to_plain(v, (*path, k), value.locs.get(k, value.loc), table) for k, v in value.items()}
    if isinstance(value, LList):
        return [_to_plain(v, (*path, i), child_loc(value, i, value.loc), table) for i, v in enumerate(value)]
    return value

"""Variants: one spec written as changes to another.

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

import re
from pathlib import Path
from typing import Any

from netspec.errors import Location, Problem, SpecError, Suggestions, listing
from netspec.language.yamlio import LList, LMap, read_yaml_file

MAX_EXTENDS_DEPTH = 16
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VARIANT_ONLY_KEYS = ("extends", "patch", "replace", "insert", "remove")


def load_with_bases(path: Path, display: str, root_dir: Path, stack: list[Path]) -> LMap:
    tree = read_yaml_file(path, display)
    if not isinstance(tree, LMap):
        raise SpecError.single("a spec must be a mapping (name:, input:, layers:, ...)",
                               getattr(tree, "loc", Location(display, 1, 1)))
    _name_unnamed_layers(tree)
    base_ref = tree.get("extends")
    if base_ref is None:
        for key in VARIANT_ONLY_KEYS[1:]:
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
    base = load_with_bases(base_path, base_display, root_dir, [*stack, path.resolve()])
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
        if key in VARIANT_ONLY_KEYS:
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


def layer_lists(tree: LMap) -> list[LList]:
    """Every layer list in a spec: the flat ``layers:`` or each block's ``layers:``."""
    lists = []
    if isinstance(tree.get("layers"), LList):
        lists.append(tree["layers"])
    if isinstance(tree.get("blocks"), LList):
        lists += [b["layers"] for b in tree["blocks"] if isinstance(b, LMap) and isinstance(b.get("layers"), LList)]
    return lists


def _layers_by_name(tree: LMap) -> dict[str, tuple[LList, int]]:
    found = {}
    for layers in layer_lists(tree):
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
    for layers in layer_lists(tree):
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
    for layers in layer_lists(tree):  # one pass, so removing many layers stays linear
        keep = [i for i, layer in enumerate(layers) if not (isinstance(layer, LMap) and layer.get("name") in doomed)]
        kept, kept_locs = [layers[i] for i in keep], [layers.locs[i] for i in keep]
        layers[:] = kept
        layers.locs[:] = kept_locs
    where_removed = dict(zip(removals, removals.locs, strict=True))
    for layers in layer_lists(tree):  # a layer that names a removed one as its input would lose it
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
    name_layers_in(*layer_lists(tree))


def name_layers_in(*layer_lists: LList, taken: set[str] | None = None) -> None:
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



"""``--set`` overrides and ``${params}``: each reference parsed once (netspec.language.expressions),
substituted with bounds on how much text substitution may produce."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from netspec.errors import Location, Problem, SpecError, Suggestions, listing
from netspec.language.expressions import Expression, ExpressionError, parse
from netspec.language.yamlio import MAX_DEPTH, LList, LMap, child_loc, parse_scalar, parse_yaml_text

Path_ = tuple[Any, ...]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A reference holds no '$', '{' or '}': the match then never runs past the next '$' or '{', so
# text full of unclosed "${" is scanned in linear time.
PARAM_REF = re.compile(r"\$\{([^${}]*)\}")
# ${param} expansion is bounded like alias expansion: one string, all of them together, and how
# deeply params may refer to params (13 params each holding ten references to the next would
# otherwise ask for ~10**13 characters from an 881-byte file).
MAX_EXPANDED_CHARS = 1 << 16  # one string after substitution; a description is at most 4,000
MAX_EXPANSION_TOTAL = 1 << 20  # characters produced by substitution in the whole document
MAX_PARAM_DEPTH = 32



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


def apply_overrides(tree: LMap, overrides: list[Override]) -> None:
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


def resolve_params(tree: LMap, expressions: dict[Location, Expression | str]) -> None:
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
    budget = Budget(expressions)
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
        value = substitute(raw[name], raw.locs[name], lambda n, loc: lookup(n, loc, (*chain, name)), problems,
                            budget=budget, owner=f"param '{name}'")
        resolved[name] = value
        return value

    def lookup(name: str, loc: Location, chain: tuple[str, ...] = ()) -> Any:
        if name not in raw:
            hint = suggest(name, raw) or (
                f"defined params: {listing(raw)}" if raw else "declare it under 'params:'")
            if name == REPETITION:
                hint = REPETITION_HINT
            problems.append(Problem(f"undefined param '${{{name}}}'", loc, hint=hint))
            return None
        return resolve_param(name, chain)

    for name in list(raw):
        raw[name] = resolve_param(name, ())
    for key in list(tree):
        if key not in ("params", "modules"):  # a module's ${...} are resolved per use (netspec.language.modules)
            tree[key] = substitute(tree[key], tree.locs.get(key, tree.loc), lookup, problems, budget=budget)
    if problems:
        raise SpecError(problems)


class Budget:
    """Characters that ${param} substitution may still produce in this document, and where each
    whole-value expression it evaluated is written (LoadedSpec.expressions)."""

    def __init__(self, expressions: dict[Location, Expression | str] | None = None) -> None:
        self.left = MAX_EXPANSION_TOTAL
        self.expressions = expressions if expressions is not None else {}


def _whole_reference(value: str) -> str | None:
    """What ``${...}`` holds when it is the whole value (which then keeps its type)."""
    whole = PARAM_REF.fullmatch(value)
    return whole.group(1) if whole and not value.startswith("$$") else None


def parse_references(node: Any) -> None:
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
            parse_references(value)


def _reference(expression: Expression | str, loc: Location, lookup, problems: list[Problem],
               layer: str | None) -> tuple[Any, Expression | None]:
    """The value of one ``${...}`` (a param by name, or arithmetic over params:
    netspec.language.expressions) and its parsed expression (None where it does not parse)."""
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


# The number of a repetition (from 0), which the params of a repeated use may be written from
# (`number: ${start + repetition}`): each repetition evaluates them with its own number.
REPETITION = "repetition"
REPETITION_HINT = ("'repetition' is the number of a repetition, from 0, in the params of a use with 'repeat' "
                   "(number: ${start + repetition})")


@dataclass(frozen=True)
class PerRepetition:
    """A repeated use's param written from ``repetition``, left for the expander to evaluate per
    repetition (netspec.language.modules), in the scope the use is written in."""

    expression: Expression
    loc: Location

    @property
    def written(self) -> str:
        return f"${{{self.expression.text}}}"

    def value(self, number: int, values: Mapping[str, Any], problems: list[Problem], layer: str) -> Any:
        def lookup(name: str, loc: Location) -> Any:
            if name == REPETITION:
                return number
            if name not in values:
                problems.append(Problem(f"undefined param '${{{name}}}'", loc, layer,
                                        "declare it under the module's 'params:' or the spec's"))
                return None
            return values[name]
        return _reference(self.expression, self.loc, lookup, problems, layer)[0]


def _defer_per_repetition(params: LMap) -> None:
    """Leave the whole-value ``${...}`` that name ``repetition`` in a repeated use's params to
    the expander."""
    for key in list(params):
        raw = params[key]
        if isinstance(raw, str) and (inner := _whole_reference(raw)) is not None:
            try:
                raw = parse(inner)
            except ExpressionError:
                continue  # reported where it is substituted
        if isinstance(raw, Expression) and REPETITION in raw.names:
            params[key] = PerRepetition(raw, params.locs.get(key, params.loc))


def substitute(value: Any, loc: Location, lookup, problems: list[Problem], layer: str | None = None, *,
                budget: Budget, owner: str | None = None) -> Any:
    """Replace ``${name}`` references: a whole-string reference keeps the param's type (an int stays
    an int); a reference inside longer text is formatted into it; ``$${`` is a literal ``${``.

    Text built from references is bounded (MAX_EXPANDED_CHARS each, MAX_EXPANSION_TOTAL in all);
    ``owner`` names what is being expanded (a param) for that error."""
    if isinstance(value, LMap):
        if "type" in value and isinstance(value.get("name"), str):
            layer = value["name"]
        if "module" in value and "repeat" in value:
            for key in ("params", "first"):
                if isinstance(value.get(key), LMap):
                    _defer_per_repetition(value[key])
        for key in list(value):
            value[key] = substitute(value[key], value.locs.get(key, value.loc), lookup, problems, layer,
                                     budget=budget, owner=owner)
        return value
    if isinstance(value, LList):
        for i, item in enumerate(value):
            value[i] = substitute(item, child_loc(value, i, loc), lookup, problems, layer,
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

        result = PARAM_REF.sub(replace, value).replace("$${", "${")
        budget.left -= len(result)
        budget.expressions[loc] = value  # text with references inside: as written, ${...} and all
    if layer is not None:
        problems[before:] = [dataclasses.replace(p, layer=layer) for p in problems[before:]]
    return result




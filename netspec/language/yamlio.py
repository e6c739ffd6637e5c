"""Safe YAML reading that remembers where every value came from.

PyYAML's composer (safe, C-accelerated where available) gives nodes with marks; we walk them into
plain dicts and lists that also carry a :class:`Location` per child, refusing what a spec never
needs: duplicate keys, merge keys, tags beyond the plain scalars, non-finite numbers, alias bombs,
very deep nesting and very large files.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from netspec.errors import Location, Problem, SpecError

MAX_FILE_BYTES = 1 << 20  # a real spec is a few KiB
MAX_INTEGER = 2**53  # beyond this a number is not exact in JSON or as a float
MAX_NODES = 100_000  # counted after alias expansion, so a "billion laughs" document stops early
MAX_DEPTH = 64
# PyYAML reads a base-60 integer (1:30:00) in time quadratic in its parts, and Python refuses to
# read an integer of more than 4,300 digits: a number is refused by its length before either
MAX_NUMBER_CHARS = 64

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader, reading numbers as YAML 1.2 does: ``1e-5``, ``1E5`` and ``1e+5`` are floats
    (YAML 1.1 wants a dot and a signed exponent, so it reads ``1e-5`` as text, and Python prints
    0.00001 as ``1e-05``)."""


# YAML 1.1's float forms stay as they are; this adds the ones YAML 1.2 (and Python, and JSON) also
# accept: an exponent after an integer or a bare fraction, with or without its sign.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class LMap(dict):
    """A YAML mapping; ``locs[key]`` is where that key was written."""

    chain: list[str]  # set by the loader on a spec's root: the spec and the bases it extends

    def __init__(self, loc: Location):
        super().__init__()
        self.loc = loc
        self.locs: dict[str, Location] = {}


class LList(list):
    """A YAML sequence; ``locs[i]`` is where item ``i`` was written."""

    def __init__(self, loc: Location):
        super().__init__()
        self.loc = loc
        self.locs: list[Location] = []


def child_loc(container: Any, key: Any, default: Location) -> Location:
    """Location of ``container[key]``, falling back to the container's own, then ``default``."""
    if isinstance(container, LMap):
        return container.locs.get(key, container.loc)
    if isinstance(container, LList) and isinstance(key, int) and 0 <= key < len(container.locs):
        return container.locs[key]
    return getattr(container, "loc", default)


def read_yaml_file(path: Path, display: str | None = None) -> Any:
    """Read one YAML document from ``path`` into an LMap/LList tree; raise SpecError on any problem."""
    name = display or str(path)
    try:
        if not path.exists():
            raise SpecError.single(f"file not found: {name}",
                                   hint="check the path; specs live in specs/ by convention")
        if not path.is_file():
            raise SpecError.single(f"not a file: {name}")
        size = path.stat().st_size
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        raise SpecError.single(f"cannot open {name}: {getattr(exc, 'strerror', None) or exc}",
                               hint="check the path") from None
    if size > MAX_FILE_BYTES:
        raise SpecError.single(
            f"file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for a spec",
            Location(name), hint="a spec is a few KiB; is this the right file?")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError.single(f"cannot read {name}: {exc.strerror or exc}", Location(name)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError.single(
            f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            Location(name, line, 1), hint="save the spec as UTF-8") from None
    return parse_yaml_text(text, name)


def _prescan(text: str, name: str) -> None:
    """Refuse deep nesting and a huge number of values before composing. PyYAML's composer
    recurses once per level, so 50,000 '[' in a 100 KB file overflow the C stack (a segfault)
    before any node could be counted; and composing a megabyte of nested lists takes seconds. The
    parser's event stream is produced without recursion, and is read only as far as the first
    level too deep or the first value too many (keys count too, so the bound is twice the values')."""
    depth = events = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(_mark(name, event))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
            continue
        elif not isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
            continue
        events += 1
        if events > 2 * MAX_NODES + 1:
            raise SpecError.single(f"document holds more than {MAX_NODES:,} values", _mark(name, event),
                                   hint="a spec holds a few hundred values; is this the right file?")


def _too_deep(loc: Location) -> SpecError:
    return SpecError.single(f"nesting is deeper than {MAX_DEPTH} levels", loc,
                            hint="flatten the structure; a spec is at most a few levels deep")


def _mark(name: str, event: yaml.Event) -> Location:
    mark = event.start_mark
    assert mark is not None  # the parser marks every event it makes
    return Location(name, mark.line + 1, mark.column + 1)


def parse_yaml_text(text: str, name: str) -> Any:
    try:
        _prescan(text, name)
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
        if exc.problem and "maximum nesting depth" in exc.problem:
            # libyaml 0.2.6 (bundled from PyYAML 6.0.4) stops at 1,000 levels while it scans ahead,
            # before the parser emits the event at which _prescan would stop at MAX_DEPTH
            raise _too_deep(loc) from None
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "malformed YAML"
        raise SpecError.single(f"malformed YAML: {problem}", loc,
                               hint="check indentation, colons and brackets near this line") from None
    except yaml.YAMLError as exc:
        raise SpecError.single(f"malformed YAML: {exc}", Location(name)) from None
    if root is None:
        raise SpecError.single("the file is empty", Location(name, 1, 1),
                               hint="a spec needs at least name, input and layers")
    walker = _Walker(name)
    tree = walker.walk(root, 0)
    if walker.problems:
        raise SpecError(walker.problems)
    return tree


class _Walker:
    def __init__(self, name: str):
        self.name = name
        self.nodes = 0
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.name, node.start_mark.line + 1, node.start_mark.column + 1)

    def walk(self, node: yaml.Node, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SpecError.single(
                f"document expands to more than {MAX_NODES:,} values (nested aliases?)", self.loc(node),
                hint="a spec never needs this; remove the repeated *alias references")
        if depth > MAX_DEPTH:
            raise _too_deep(self.loc(node))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _COLLECTION_TAGS:
            raise SpecError.single(f"unsupported YAML tag {node.tag!r}", self.loc(node),
                                   hint="specs hold plain numbers, strings, booleans, lists and mappings")
        if isinstance(node, yaml.MappingNode):
            return self.walk_mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            seq = LList(self.loc(node))
            for item in node.value:
                seq.append(self.walk(item, depth + 1))
                seq.locs.append(self.loc(item))
            return seq
        return self.scalar(node)

    def walk_mapping(self, node: yaml.MappingNode, depth: int) -> LMap:
        mapping = LMap(self.loc(node))
        for key_node, value_node in node.value:
            key_loc = self.loc(key_node)
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(Problem("YAML merge keys (<<) are not supported", key_loc,
                                             hint="use 'extends:' for variants or ${params} for shared values"))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem("a mapping key must be a plain name", key_loc))
                continue
            key = self.scalar(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in mapping:
                first = mapping.locs[key]
                self.problems.append(Problem(
                    f"duplicate key '{key}' (first given at line {first.line})", key_loc,
                    hint="remove one of them; YAML would silently keep only the last"))
                continue
            mapping[key] = self.walk(value_node, depth + 1)
            mapping.locs[key] = key_loc
        return mapping

    def scalar(self, node: yaml.Node) -> Any:
        loc = self.loc(node)
        if node.tag not in _PLAIN_TAGS:
            if node.tag.startswith("tag:yaml.org,2002:timestamp"):
                return node.value  # a date is text to us
            self.problems.append(Problem(f"unsupported YAML tag {node.tag!r}", loc,
                                         hint="specs hold plain numbers, strings, booleans, lists and mappings"))
            return None
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            self.problems.append(Problem(f"a number of {len(node.value):,} characters", loc,
                                         hint=f"a number in a spec is at most {MAX_NUMBER_CHARS} characters; "
                                         "quote it if it is text"))
            return None
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problems.append(Problem(f"bad value: {exc}", loc))
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.problems.append(Problem(f"{node.value!r} is not a finite number", loc,
                                         hint="use a finite value"))
            return None
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
            self.problems.append(Problem(f"{node.value} is too large a number for a spec", loc,
                                         hint=f"integers in a spec stay within ±{MAX_INTEGER:,} (2**53)"))
            return None
        return value


def parse_scalar(text: str) -> Any:
    """Parse a command-line value (``--set lr=0.1``) with the same rules as a YAML scalar."""
    return parse_yaml_text(text, "<--set>") if text.strip() else ""

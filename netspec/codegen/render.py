"""Shared code generation: a strict jinja2 environment and the helpers templates may use.

Templates only lay out text. Every value reaches the source through ``py`` (Python's repr of a
validated literal) and every name is a validated identifier; shape arithmetic stays in the
checker and the backend's Python code.
"""

from __future__ import annotations

import linecache
import math
import re
import sys
import types
from pathlib import Path
from typing import Any

import jinja2

from netspec import __version__
from netspec.layers.base import IDS, is_tokens, layout_of

_SAFE_LITERALS = (bool, int, float, str, type(None))


class Symbol:
    """An argument of a generated class's constructor, standing in for a value that differs
    between the class's uses: rendered as its name (``planes``) or an expression over the
    arguments (``planes * 4``). Templates may print it and compare it with a default (it is never
    equal to one, so the argument is always written). It stands only for numbers: a flag or a name
    that differs between uses gets a class per use instead (netspec_torch.classes), since macros
    branch on those."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.rendered = False

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


def py(value) -> str:
    """The Python literal for a validated value (int, float, bool, str, None, tuples of them)."""
    if isinstance(value, Symbol):
        value.rendered = True
        return value.text
    if isinstance(value, tuple):
        return "(" + ", ".join(py(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(py(v) for v in value) + "]"
    if not isinstance(value, _SAFE_LITERALS):
        raise TypeError(f"refusing to render {type(value).__name__} into generated source")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("refusing to render a non-finite number into generated source")
    text = repr(value)
    if isinstance(value, str) and text.startswith("'") and '"' not in value and "\\" not in text:
        text = f'"{text[1:-1]}"'  # the double quotes most Python code uses
    return text


def pair(value) -> str:
    """A per-axis value as both frameworks take it: ``11`` for a square (11, 11) or a
    one-axis (11,), ``(3, 5)`` otherwise."""
    if isinstance(value, Symbol):
        return py(value)
    return py(value[0]) if all(v == value[0] for v in value) else py(tuple(value))


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LINE_LENGTH = 120  # generated code passes ruff with the project's settings


def _top_level_split(text: str) -> list[str]:
    """Split ``a=1, b=(2, 3), c="x, y"`` at the commas outside brackets and strings."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote and text[i - 1] != "\\" else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def wrap_call(call: str, indent: int, before: int = 0, after: int = 0) -> str:
    """``call`` (``Name(arguments)``) as it stands, or when the line it ends up on (``indent``
    spaces, ``before`` characters ahead of it and ``after`` behind) is too long, with its arguments
    on the lines below, as black and ruff format lay out a long call."""
    if indent + before + len(call) + after <= LINE_LENGTH:
        return call
    if call.startswith("[") and call.endswith("]"):  # a list literal: its items on lines of their own
        head, opening, inner, closing = "", "[", call[1:-1], "]"
    elif call.endswith(")") and "(" in call:
        head, opening, rest = call.partition("(")
        inner, closing = rest[:-1], ")"
    else:
        return call
    pad = " " * (indent + 4)
    if len(pad) + len(inner) <= LINE_LENGTH:
        return f"{head}{opening}\n{pad}{inner}\n{' ' * indent}{closing}"
    lines = "".join(f"{pad}{wrap_call(part, indent + 4, 0, 1)},\n" for part in _top_level_split(inner))
    return f"{head}{opening}\n{lines}{' ' * indent}{closing}"


def ident(name: str) -> str:
    """A name that must already be a valid identifier; refuse anything else."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"refusing to render {name!r} as an identifier")
    return name


def comment(text: str) -> str:
    """Free text (a description) made safe for a ``#`` comment: one line, printable."""
    flat = " ".join(str(text).split())
    return "".join(ch for ch in flat if ch.isprintable())


def class_name(spec_name: str) -> str:
    """'alexnet-cifar10' -> 'AlexnetCifar10'."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", spec_name) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Net"
    return name if name[0].isalpha() else f"Net{name}"


def module_name(spec_name: str) -> str:
    """'alexnet-cifar10' -> 'alexnet_cifar10' (a file name that is also importable)."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", spec_name).strip("_").lower() or "net"
    return name if name[0].isalpha() else f"net_{name}"


def environment(package: str) -> jinja2.Environment:
    """A jinja2 environment over ``package``'s templates/ folder, strict about undefined names."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # generating Python, not HTML; values go through `py`
    )
    env.filters.update(py=py, pair=pair, ident=ident, comment=comment, wrap_call=wrap_call)
    env.globals["netspec_version"] = __version__
    return env


def execute_generated(source: str, name: str) -> dict[str, Any]:
    """Run generated source as module ``netspec_generated.<name>`` and return its namespace.

    Only netspec's own output comes here, rendered from validated values (never user text as
    code). Registering it with linecache and sys.modules lets tracebacks, inspect, pickle and
    torch.compile find the source.
    """
    filename = f"<netspec-generated {name}.py>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = types.ModuleType(f"netspec_generated.{name}")
    module.__file__ = filename
    sys.modules[module.__name__] = module
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102
    return module.__dict__


HEADER_TEXT_LIMIT = 80  # a file name or an override in a header comment: lines stay within ruff's 120


def _bounded(text: str) -> str:
    text = comment(text)
    return text if len(text) <= HEADER_TEXT_LIMIT else text[: HEADER_TEXT_LIMIT - 1] + "…"


def header_context(net) -> dict[str, Any]:
    """What every generated file's header says: which spec (its file's name: a path would put the
    user's folders in the file and run past the line length) with which overrides, which netspec,
    shapes and size."""
    return {
        "spec_file": _bounded(Path(net.source.file).name),
        "overrides": [_bounded(text) for text in net.source.loaded.overrides],
        "spec_name": net.spec.name,
        "description": net.spec.description,
        "params": f"{net.totals.params:,}",
        "tokens_input": is_tokens(net.input_shape),  # held as it is in both frameworks, not channels first or last
        "ids_input": layout_of(net.input_shape) is IDS,  # integers: an embedding looks them up
    }

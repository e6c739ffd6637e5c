"""User-facing errors: every problem carries where it is (file:line:column), which layer, and a fix.

The CLI turns a :class:`UserError` into one message per problem and exit code 2; anything else
escaping is an internal failure (exit code 1). What went wrong decides the subclass, so a program
using netspec can catch the kind it handles: a mistake in the spec (SpecError), in a command's
options (UsageError), weights that do not fit (WeightsError), data that cannot be used
(DataError), a file netspec will not or cannot write (OutputError), a training run that cannot
start, go on or resume (RunError), or what the machine lacks (SetupError).
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Self


def counted(number: int, noun: str) -> str:
    """``3 inputs``, ``1 output``: a count in a message."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(text: object) -> str:
    """``text`` made safe to print: every character that is not printable is written as an escape
    (``\\x1b``, ``\\u202e``). That covers C0 and C1 controls (ESC starts the sequences that clear a
    screen or retitle a window), DEL, bidi embeddings, overrides and isolates (which reorder what is
    shown), zero-width and other invisible format characters, line and paragraph separators, and
    newlines and tabs (each problem is one line). Accents and other scripts are left as they are.
    Use it wherever user text (a key, a name, a path, a value) is put into a message or table."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _shown_lines(text: str) -> str:
    """:func:`shown`, keeping the line breaks of a message laid out on several lines."""
    return "\n".join(shown(line) for line in str(text).split("\n"))


@dataclass(frozen=True, order=True)
class Location:
    """A position in a YAML file; line and column are 1-based, as editors show them."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One mistake in a spec: what is wrong, where, in which layer, and how to fix it."""

    message: str
    location: Location | None = None
    layer: str | None = None
    hint: str | None = None

    def format(self) -> str:
        """The problem for a terminal; user text inside is shown escaped (see :func:`shown`)."""
        where = f"{shown(self.location)}: " if self.location else ""
        who = f"layer '{shown(self.layer)}': " if self.layer else ""
        text = f"{where}error: {who}{_shown_lines(self.message)}"
        if self.hint:
            text += f"\n    hint: {_shown_lines(self.hint)}"
        return text

    def to_json(self) -> dict:
        loc = self.location
        return {
            "file": loc.file if loc else None,
            "line": loc.line if loc and loc.line else None,
            "column": loc.column if loc and loc.column else None,
            "layer": self.layer,
            "message": self.message,
            "hint": self.hint,
        }


def _merge_module_repeats(problems: list[Problem]) -> list[Problem]:
    """One problem for a mistake in a module's layer, not one per use of the module: the same
    message at the same place for several scoped layers (layer1.0.conv2, layer1.1.conv2, ...).
    A problem found again for the same layer (each repetition of a repeated use) is dropped."""
    merged: dict[tuple, list[Problem]] = {}
    seen: set[tuple] = set()
    for problem in problems:
        again = (problem.location, problem.message, problem.layer)
        if again in seen:
            continue
        seen.add(again)
        scoped = problem.layer is not None and "." in problem.layer and problem.location is not None
        key = (problem.location, problem.message, problem.hint) if scoped else (id(problem),)
        merged.setdefault(key, []).append(problem)
    out = []
    for group in merged.values():
        first = group[0]
        if len(group) > 1:
            others = ", ".join(str(p.layer) for p in group[1:4]) + (", ..." if len(group) > 4 else "")
            uses = "1 more use" if len(group) == 2 else f"{len(group) - 1} more uses"
            first = Problem(f"{first.message} (and in {uses} of the module: {others})",
                            first.location, first.layer, first.hint)
        out.append(first)
    return out


@dataclass
class UserError(Exception):
    """One or more problems the user can fix, reported together (never a bug of netspec's)."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.problems = _merge_module_repeats(self.problems)
        super().__init__(self.format())

    @classmethod
    def single(cls, message: str, location: Location | None = None, *, layer: str | None = None,
               hint: str | None = None) -> Self:
        return cls([Problem(message, location, layer, hint)])

    def format(self) -> str:
        ordered = sorted(self.problems, key=lambda p: (p.location or Location(""), p.message))
        body = "\n".join(p.format() for p in ordered)
        count = len(self.problems)
        summary = f"{count} error{'s' if count != 1 else ''} found"
        return f"{body}\n{summary}" if count > 1 else body

    def __str__(self) -> str:
        return self.format()


class SpecError(UserError):
    """A mistake in a spec: its YAML, params, layers, modules or shapes."""


class UsageError(UserError):
    """Command options that do not fit together or with the command (--weights on a source export)."""


class WeightsError(UserError):
    """Weights that cannot be read, or that do not fit the spec (a missing, extra or mis-shaped tensor)."""


class DataError(UserError):
    """A dataset that cannot be read or used for this spec (a missing folder, a broken image)."""


class OutputError(UserError):
    """A file or folder netspec will not write (it would overwrite what it did not create) or cannot."""


class RunError(UserError):
    """A training run that cannot start, go on or resume: its folder, its checkpoints, a diverged loss."""


class ModelImportError(UserError):
    """A model netspec import cannot write as a spec: an operation without a catalogue layer,
    control flow that depends on the data, or a round trip that does not reproduce it."""


class SetupError(UserError):
    """What this machine lacks for the command: a backend, a framework or extra, a GPU, memory."""


MAX_SUGGESTION_CANDIDATES = 200


def listing(names: Collection[str], limit: int = 12) -> str:
    """'a, b, c' for a hint, cut short (with the count) when there are many."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(itertools.islice(names, limit))}, ... ({len(names):,} in all)"


class Suggestions:
    """Did-you-mean hints for one document, at most ``limit`` of them: each compares a word with
    every name, so a document with thousands of names and a mistake in each would otherwise take
    minutes. Later mistakes get the list of names only."""

    def __init__(self, limit: int = 50):
        self.left = limit

    def __call__(self, word: str, candidates: Collection[str], synonyms: dict[str, str] | None = None) -> str | None:
        close = self.closest(word, candidates, synonyms)
        return suggestion(close) if close is not None else None

    def closest(self, word: str, candidates: Iterable[str], synonyms: dict[str, str] | None = None) -> str | None:
        """The name ``word`` probably misspells, while hints are left (see :func:`closest_name`)."""
        if self.left <= 0:
            return None
        self.left -= 1
        return closest_name(word, candidates, synonyms)


def did_you_mean(word: str, candidates: Iterable[str], synonyms: dict[str, str] | None = None) -> str | None:
    """A 'did you mean ...?' suggestion, or None when nothing is close."""
    close = closest_name(word, candidates, synonyms)
    return suggestion(close) if close is not None else None


def suggestion(name: str) -> str:
    return f"did you mean '{name}'?"


def closest_name(word: str, candidates: Iterable[str], synonyms: dict[str, str] | None = None) -> str | None:
    """The candidate ``word`` is most likely a misspelling of, or None when nothing is close.

    ``synonyms`` maps spellings from other frameworks (Keras' ``filters``) to ours (``out_channels``),
    which string similarity alone would never find.
    """
    candidates = list(candidates)
    if synonyms and word in synonyms and synonyms[word] in candidates:
        return synonyms[word]
    if len(candidates) > MAX_SUGGESTION_CANDIDATES:
        # a document may hold tens of thousands of names, and one mistake each: compare with the
        # names of about the same length only, so the hints never cost more than the document
        near = [c for c in candidates if abs(len(c) - len(word)) <= 2]
        candidates = near[:MAX_SUGGESTION_CANDIDATES]
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return close[0] if close else None

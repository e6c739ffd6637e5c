"""Arithmetic inside ``${...}``: ``${width * 4}``, ``${channels // groups}``, ``${(base + 1) / 2}``,
and conditions for ``when:`` and true/false params: ``${t != 1}``, ``${stride == 1 and inp == out}``.

A small recursive-descent parser builds a tree (``Expression``) over numbers, param names,
``+ - * / // %``, unary minus, parentheses, the comparisons ``== != < <= > >=`` and ``and``,
``or``, ``not`` over them; never ``eval``. Integers stay integers (``/`` gives a float, as in
Python), so a computed channel count is an int where the schema wants one. Each text is parsed
once, and its tree travels from the spec to the backends, which write generated code from it
(``Expression.python``, ``Expression.simplified``), never by searching text. Results are bounded like any
number in a spec (|x| <= 2**53), and so is the work: MAX_LENGTH characters, MAX_NESTING
parentheses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

MAX_LENGTH = 200
MAX_NESTING = 16
LARGEST = 2**53

# ASCII digits only ([0-9], not \d, which also takes full-width and other scripts' digits that
# Python source cannot hold)
_TOKEN = re.compile(r"\s*(?:(?P<number>[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?"
                    r"|[0-9]+[eE][-+]?[0-9]+|[0-9]+)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>//|==|!=|<=|>=|[-+*/%()<>]))")
_COMPARISONS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
                "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_WORDS = ("and", "or", "not")


class ExpressionError(ValueError):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


class _Undefined(Exception):
    """A param the expression names is undefined: the lookup has already reported it."""


def evaluate(text: str, lookup: Callable[[str], Any]) -> int | float | bool | None:
    """The value of ``text``; ``lookup(name)`` gives a param's value (None when it is undefined and
    already reported, which makes the result None). ExpressionError says what is wrong and how to
    write it instead."""
    return parse(text).evaluate(lookup)


def free_names(text: str) -> frozenset[str]:
    """The params an expression names (a number's exponent, as in 1e1, is not a name)."""
    return parse(text).names


# --- the tree -----------------------------------------------------------------------------------
# A node is a tuple: ("number", value, as written), ("name", param), ("unary", "-" or "+", operand),
# ("binary", op, left, right) for + - * / // %, ("compare", op, left, right), ("and" or "or", left,
# right), ("not", operand). Tuples are immutable and hashable, so parsed expressions can be shared.
Node = tuple

# how tightly each node binds when it is written back as text (a child binding more loosely than
# its parent is parenthesised)
_BINDING = {"or": 1, "and": 2, "not": 3, "compare": 4, "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6,
            "unary": 7, "number": 8, "name": 8}


def _binding(node: Node) -> int:
    return _BINDING[node[1]] if node[0] == "binary" else _BINDING[node[0]]


@dataclass(frozen=True)
class Expression:
    """One parsed ``${...}``: its tree and the params it names, kept from the spec to the
    backends, so generated code is written from the tree and never by searching text."""

    text: str  # as written (stripped)
    tree: Node = field(repr=False)
    names: frozenset[str] = field(repr=False)

    @classmethod
    def of_tree(cls, tree: Node) -> Expression:
        return cls(_write(tree), tree, frozenset(_names_in(tree)))

    @classmethod
    def name(cls, param: str) -> Expression:
        return cls.of_tree(("name", param))

    def evaluate(self, lookup: Callable[[str], Any]) -> int | float | bool | None:
        """Its value (see ``evaluate``)."""
        try:
            return _Evaluator(self.text, lookup).value(self.tree)
        except _Undefined:
            return None

    def python(self) -> str:
        """Python source for it, with no more parentheses than it needs."""
        return _write(self.tree)

    def simplified(self, constants: Mapping[str, int | float]) -> Expression:
        """The expression with ``constants`` written as their values and worked out where they
        make a part of it constant, and identities of integer arithmetic applied (``x * 1``,
        ``x // 1``, ``x + 0``, ``x * 64 // 64``): ResNet-50's ``planes * width_per_group // 64 *
        groups`` with its widths fixed is ``planes``. (The identities hold for the integer values
        that channel counts and kernel sizes are; callers check the result against the values.)"""
        return Expression.of_tree(_simplify(self.tree, constants))

    @staticmethod
    def join(op: str, parts: list[Expression]) -> Expression:
        """``a + b + c`` of several expressions."""
        tree = parts[0].tree
        for part in parts[1:]:
            tree = ("binary", op, tree, part.tree)
        return Expression.of_tree(tree)


@lru_cache(maxsize=4096)
def parse(text: str) -> Expression:
    """The expression in ``text`` (what ``${...}`` holds), parsed once: the same text gives the
    same shared Expression. ExpressionError says what is wrong with it."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters",
                              hint="compute it in a param of its own, in steps")
    tree = _Parser(text).parse()
    return Expression(text.strip(), tree, frozenset(_names_in(tree)))


def _names_in(node: Node) -> list[str]:
    if node[0] == "name":
        return [node[1]]
    return [name for child in node[1:] if isinstance(child, tuple) for name in _names_in(child)]


class _Parser:
    """Recursive descent over the tokens, building the tree; errors of form are found here, errors
    of value (a bool in arithmetic, division by zero) when it is evaluated."""

    def __init__(self, text: str):
        self.text, self.tokens, self.depth = text, _tokens(text), 0
        self.position = 0

    def parse(self) -> Node:
        tree = self._disjunction()
        if self.position < len(self.tokens):
            raise ExpressionError(f"unexpected '{self.tokens[self.position][1]}' in '{self.text.strip()}'",
                                  hint="an expression is numbers and params joined by + - * / // %, "
                                       "or comparisons joined by and, or")
        return tree

    def _take(self) -> str:
        token = self.tokens[self.position][1]
        self.position += 1
        return token

    def _peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def _disjunction(self) -> Node:
        tree = self._conjunction()
        while self._peek() == "or":
            self._take()
            tree = ("or", tree, self._conjunction())
        return tree

    def _conjunction(self) -> Node:
        tree = self._negation()
        while self._peek() == "and":
            self._take()
            tree = ("and", tree, self._negation())
        return tree

    def _negation(self) -> Node:
        if self._peek() == "not":
            self._take()
            return ("not", self._negation())
        return self._comparison()

    def _comparison(self) -> Node:
        tree = self._sum()
        if self._peek() in _COMPARISONS:
            op = self._take()
            tree = ("compare", op, tree, self._sum())
            if self._peek() in _COMPARISONS:
                raise ExpressionError(f"comparisons cannot be chained in '{self.text.strip()}'",
                                      hint="join them with 'and': ${a < b and b < c}")
        return tree

    def _sum(self) -> Node:
        tree = self._product()
        while self._peek() in ("+", "-"):
            op = self._take()
            tree = ("binary", op, tree, self._product())
        return tree

    def _product(self) -> Node:
        tree = self._unary()
        while self._peek() in ("*", "/", "//", "%"):
            op = self._take()
            tree = ("binary", op, tree, self._unary())
        return tree

    def _unary(self) -> Node:
        if self._peek() in ("-", "+"):
            sign = self._take()
            return ("unary", sign, self._unary())
        return self._atom()

    def _atom(self) -> Node:
        if self.position >= len(self.tokens):
            raise ExpressionError(f"'{self.text.strip()}' ends where a number or a param was expected",
                                  hint="complete the expression, e.g. ${width * 4}")
        kind, token = self.tokens[self.position]
        self.position += 1
        if kind == "number":
            if len(token) > 1 and token[0] == "0" and token.isdigit() and token.strip("0"):
                raise ExpressionError(f"'{token}' has a leading zero in '{self.text.strip()}'",
                                      hint=f"write {token.lstrip('0')}; Python reads no leading zeros")
            return ("number", _checked(float(token) if any(c in token for c in ".eE") else int(token), self.text),
                    token)
        if kind == "name" and token in _WORDS:
            raise ExpressionError(f"'{token}' where a number or a param was expected in '{self.text.strip()}'",
                                  hint="'and', 'or' and 'not' join comparisons: ${stride == 1 and inp == out}")
        if kind == "name":
            return ("name", token)
        if token == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise ExpressionError(f"parentheses nested deeper than {MAX_NESTING}")
            tree = self._disjunction()
            if self._peek() != ")":
                raise ExpressionError(f"'(' without its ')' in '{self.text.strip()}'")
            self.position += 1
            self.depth -= 1
            return tree
        raise ExpressionError(f"'{token}' where a number or a param was expected in '{self.text.strip()}'",
                              hint="an expression is numbers and params joined by + - * / // %")


class _Evaluator:
    """A tree's value, by Python's rules: integers stay integers, ``/`` gives a float; every operand
    is worked out (no short circuit), so a mistake on either side of ``or`` is reported."""

    def __init__(self, text: str, lookup: Callable[[str], Any]):
        self.text, self.lookup = text, lookup

    def value(self, node: Node) -> int | float | bool:
        kind = node[0]
        if kind == "number":
            return node[1]
        if kind == "name":
            value = self.lookup(node[1])
            if value is None:
                raise _Undefined
            if not isinstance(value, int | float):  # a bool is an int too: true/false params join conditions
                raise ExpressionError(f"param '{node[1]}' is {value!r}, not a number, in '{self.text}'",
                                      hint="arithmetic works on number params, conditions on true/false ones")
            return value
        if kind == "unary":
            operand = self._numbers(node[1], self.value(node[2]))[0]
            return -operand if node[1] == "-" else operand
        if kind == "not":
            return not self._truth(self.value(node[1]), "not")
        if kind in ("and", "or"):
            first, second = self._truth(self.value(node[1]), kind), self._truth(self.value(node[2]), kind)
            return (first and second) if kind == "and" else (first or second)
        op, left, right = node[1], self.value(node[2]), self.value(node[3])
        if kind == "compare":
            if op not in ("==", "!=") or isinstance(left, bool) != isinstance(right, bool):
                left, right = self._numbers(op, left, right)
            return _COMPARISONS[op](left, right)
        left, right = self._numbers(op, left, right)
        if op in ("/", "//", "%") and right == 0:
            raise ExpressionError(f"division by zero in '{self.text}'")
        return _checked(_ARITHMETIC[op](left, right), self.text)

    def _truth(self, value: int | float | bool, word: str) -> bool:
        if not isinstance(value, bool):
            raise ExpressionError(f"'{word}' joins comparisons, and {value!r} is a number, in '{self.text}'",
                                  hint="compare it: ${stride == 1 and inp == out}")
        return value

    def _numbers(self, op: str, *values: int | float | bool) -> tuple[int | float, ...]:
        for value in values:
            if isinstance(value, bool):
                raise ExpressionError(f"'{op}' works on numbers, and {value!r} is true or false, in "
                                      f"'{self.text}'", hint="arithmetic works on number params only")
        return values


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
    "//": lambda a, b: a // b, "%": lambda a, b: a % b}


def _write(node: Node) -> str:
    kind = node[0]
    if kind == "number":
        return node[2]
    if kind == "name":
        return node[1]
    if kind == "unary":
        return node[1] + _operand(node[2], _BINDING["unary"])
    if kind == "not":
        return "not " + _operand(node[1], _BINDING["not"])
    if kind in ("and", "or"):
        return f"{_operand(node[1], _BINDING[kind])} {kind} {_operand(node[2], _BINDING[kind] + 1)}"
    binding = _BINDING["compare"] if kind == "compare" else _BINDING[node[1]]
    # left-associative: a right operand binding only as tightly needs parentheses (a - (b - c))
    return f"{_operand(node[2], binding)} {node[1]} {_operand(node[3], binding + 1)}"


def _operand(node: Node, at_least: int) -> str:
    text = _write(node)
    return text if _binding(node) >= at_least else f"({text})"


def _is_number(node: Node, value: int | None = None) -> bool:
    return node[0] == "number" and type(node[1]) is int and (value is None or node[1] == value)


def _simplify(node: Node, constants: Mapping[str, int | float]) -> Node:
    kind = node[0]
    if kind == "name":
        value = constants.get(node[1])
        return ("number", value, repr(value)) if isinstance(value, int | float) and not isinstance(value, bool) \
            else node
    if kind == "number":
        return node
    children = [_simplify(child, constants) if isinstance(child, tuple) else child for child in node[1:]]
    node = (kind, *children)
    if all(child[0] == "number" for child in children if isinstance(child, tuple)):
        try:
            value = _Evaluator(_write(node), lambda name: None).value(node)
        except ExpressionError:
            return node  # left as written: evaluating it reports the mistake
        return ("number", value, repr(value))
    if kind != "binary":
        return node
    op, left, right = node[1], node[2], node[3]
    if op == "*" and _is_number(right, 1) or op in ("//", "+", "-") and _is_number(right, 0 if op != "//" else 1):
        return left
    if op in ("*", "+") and _is_number(left, 1 if op == "*" else 0):
        return right
    if op == "//" and _is_number(right) and right[1] > 0 and left[0] == "binary" and left[1] == "*" \
            and _is_number(left[3]) and left[3][1] % right[1] == 0:  # x * 128 // 64 is x * 2
        return _simplify(("binary", "*", left[2], ("number", left[3][1] // right[1], str(left[3][1] // right[1]))),
                         constants)
    return node


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].isspace():
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            bad = text[position:].lstrip()[:1]
            raise ExpressionError(f"'{bad}' cannot appear in an expression ('{text.strip()}')",
                                  hint="use numbers, params, + - * / // %, parentheses, comparisons and and, or, not")
        kind = match.lastgroup or "op"
        tokens.append((kind, match.group(kind)))
        position = match.end()
    if not tokens:
        raise ExpressionError("an empty ${} reference", hint="name a param: ${num_classes}")
    return tokens


def _checked(value: int | float, text: str) -> int | float:
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > LARGEST:
        raise ExpressionError(f"'{text.strip()}' goes beyond {LARGEST:,} (2**53)",
                              hint="a spec's numbers must stay below 2**53")
    return value

"""Arithmetic inside ``${...}``: ``${width * 4}``, ``${channels // groups}``, ``${(base + 1) / 2}``,
and conditions for ``when:`` and true/false params: ``${t != 1}``, ``${stride == 1 and inp == out}``.

A small recursive-descent parser over numbers, param names, ``+ - * / // %``, unary minus,
parentheses, the comparisons ``== != < <= > >=`` and ``and``, ``or``, ``not`` over them; never
``eval``. Integers stay integers (``/`` gives a float, as in Python), so a
computed channel count is an int where the schema wants one. Results are bounded like any number
in a spec (|x| <= 2**53), and so is the work: MAX_LENGTH characters, MAX_NESTING parentheses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
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
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters",
                              hint="compute it in a param of its own, in steps")
    try:
        return _Parser(text, lookup).parse()
    except _Undefined:
        return None


class _Parser:
    def __init__(self, text: str, lookup: Callable[[str], Any]):
        self.text, self.lookup, self.tokens, self.depth = text, lookup, _tokens(text), 0
        self.position = 0

    def parse(self) -> int | float | bool:
        value = self._disjunction()
        if self.position < len(self.tokens):
            raise ExpressionError(f"unexpected '{self.tokens[self.position][1]}' in '{self.text.strip()}'",
                                  hint="an expression is numbers and params joined by + - * / // %, "
                                       "or comparisons joined by and, or")
        return value

    def _disjunction(self) -> int | float | bool:
        value = self._conjunction()
        while self._peek() == "or":
            self.position += 1
            right = self._conjunction()
            value = self._truth(value, "or") or self._truth(right, "or")
        return value

    def _conjunction(self) -> int | float | bool:
        value = self._negation()
        while self._peek() == "and":
            self.position += 1
            right = self._negation()
            value = self._truth(value, "and") and self._truth(right, "and")
        return value

    def _negation(self) -> int | float | bool:
        if self._peek() == "not":
            self.position += 1
            return not self._truth(self._negation(), "not")
        return self._comparison()

    def _comparison(self) -> int | float | bool:
        value = self._sum()
        if self._peek() in _COMPARISONS:
            op = self.tokens[self.position][1]
            self.position += 1
            right = self._sum()
            if op not in ("==", "!=") or isinstance(value, bool) != isinstance(right, bool):
                value, right = self._numbers(op, value, right)
            value = _COMPARISONS[op](value, right)
            if self._peek() in _COMPARISONS:
                raise ExpressionError(f"comparisons cannot be chained in '{self.text.strip()}'",
                                      hint="join them with 'and': ${a < b and b < c}")
        return value

    def _truth(self, value: int | float | bool, word: str) -> bool:
        if not isinstance(value, bool):
            raise ExpressionError(f"'{word}' joins comparisons, and {value!r} is a number, in '{self.text.strip()}'",
                                  hint="compare it: ${stride == 1 and inp == out}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def _sum(self) -> int | float:
        value = self._product()
        while self._peek() in ("+", "-"):
            op = self.tokens[self.position][1]
            self.position += 1
            right = self._product()
            value, right = self._numbers(op, value, right)
            value = _checked(value + right if op == "+" else value - right, self.text)
        return value

    def _product(self) -> int | float:
        value = self._unary()
        while self._peek() in ("*", "/", "//", "%"):
            op = self.tokens[self.position][1]
            self.position += 1
            right = self._unary()
            value, right = self._numbers(op, value, right)
            if op != "*" and right == 0:
                raise ExpressionError(f"division by zero in '{self.text.strip()}'")
            if op == "*":
                value = value * right
            elif op == "/":
                value = value / right
            elif op == "//":
                value = value // right
            else:
                value = value % right
            value = _checked(value, self.text)
        return value

    def _unary(self) -> int | float:
        if self._peek() in ("-", "+"):
            sign = self.tokens[self.position][1]
            self.position += 1
            value = self._numbers(sign, self._unary())[0]
            return -value if sign == "-" else value
        return self._atom()

    def _numbers(self, op: str, *values: int | float | bool) -> tuple[int | float, ...]:
        for value in values:
            if isinstance(value, bool):
                raise ExpressionError(f"'{op}' works on numbers, and {value!r} is true or false, in "
                                      f"'{self.text.strip()}'", hint="arithmetic works on number params only")
        return values

    def _atom(self) -> int | float:
        if self.position >= len(self.tokens):
            raise ExpressionError(f"'{self.text.strip()}' ends where a number or a param was expected",
                                  hint="complete the expression, e.g. ${width * 4}")
        kind, token = self.tokens[self.position]
        self.position += 1
        if kind == "number":
            if len(token) > 1 and token[0] == "0" and token.isdigit() and token.strip("0"):
                raise ExpressionError(f"'{token}' has a leading zero in '{self.text.strip()}'",
                                      hint=f"write {token.lstrip('0')}; Python reads no leading zeros")
            return _checked(float(token) if any(c in token for c in ".eE") else int(token), self.text)
        if kind == "name" and token in _WORDS:
            raise ExpressionError(f"'{token}' where a number or a param was expected in '{self.text.strip()}'",
                                  hint="'and', 'or' and 'not' join comparisons: ${stride == 1 and inp == out}")
        if kind == "name":
            value = self.lookup(token)
            if value is None:
                raise _Undefined
            if not isinstance(value, int | float):  # a bool is an int too: true/false params join conditions
                raise ExpressionError(f"param '{token}' is {value!r}, not a number, in '{self.text.strip()}'",
                                      hint="arithmetic works on number params, conditions on true/false ones")
            return value
        if token == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise ExpressionError(f"parentheses nested deeper than {MAX_NESTING}")
            value = self._disjunction()
            if self._peek() != ")":
                raise ExpressionError(f"'(' without its ')' in '{self.text.strip()}'")
            self.position += 1
            self.depth -= 1
            return value
        raise ExpressionError(f"'{token}' where a number or a param was expected in '{self.text.strip()}'",
                              hint="an expression is numbers and params joined by + - * / // %")


def free_names(text: str) -> set[str]:
    """The params an expression names (a number's exponent, as in 1e1, is not a name)."""
    return {token for kind, token in _tokens(text) if kind == "name" and token not in _WORDS}


def rewrite(text: str, replace: Callable[[str], str | None]) -> str:
    """The expression as Python text, token by token, with each param for which ``replace`` gives
    text written as that text: generated code is built from the tokens, never by searching the
    written text (where 'e1' inside '1e1' would look like a param)."""
    out = []
    for kind, token in _tokens(text):
        new = replace(token) if kind == "name" and token not in _WORDS else None
        out.append(token if new is None else new)
    return " ".join(out).replace("( ", "(").replace(" )", ")")


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

"""Comparisons of a quantity with a number ("over 100 ETH", "at least 2
BTC", "queries longer than 500 ms"), lifted out of the question as
(operator, number) pairs. They compare the table's size column (a
transfer's amount, a trade's size, a query's duration); a table without
one reports them as not used. A number followed by a time unit ("over 24
hours") is not a comparison; milliseconds ("500 ms") are the unit of durations.
"""

from __future__ import annotations

import operator as op
import re

from sqlglot import exp

OPERATORS = {
    "more than": ">",
    "greater than": ">",
    "larger than": ">",
    "bigger than": ">",
    "longer than": ">",
    "over": ">",
    "above": ">",
    "exceeding": ">",
    "at least": ">=",
    "less than": "<",
    "smaller than": "<",
    "shorter than": "<",
    "fewer than": "<",
    "under": "<",
    "below": "<",
    "at most": "<=",
}
WORDS = {">": "over", ">=": "at least", "<": "under", "<=": "at most"}
_TIME_UNIT = r"(?!\s*(?:s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?|d|days?|weeks?|months?|years?)\b)"
BOUND_RE = re.compile(
    r"\b(?:(?:took|take|takes|taking|lasted|lasting|ran)\s+)?("
    + "|".join(sorted(OPERATORS, key=len, reverse=True))
    + r")\s+(\d+(?:\.\d+)?)\b"
    + _TIME_UNIT
    + r"(?:\s*(?:ms|milliseconds?)\b)?"
)
_COMPARE = {">": op.gt, ">=": op.ge, "<": op.lt, "<=": op.le}


def lift_bounds(text: str) -> tuple[str, list[list[str]]]:
    """The text without its comparisons, and the comparisons as [operator, number]."""
    bounds: list[list[str]] = []

    def take(match: re.Match[str]) -> str:
        bounds.append([OPERATORS[match.group(1)], match.group(2), ""])  # "": the size column
        return " "

    return BOUND_RE.sub(take, text), bounds


def number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def conditions(column: str, bounds: list[list[str]], params: dict[str, object]) -> list[exp.Expression]:
    """``column > :bound0`` and so on (a bound's own column, else ``column``),
    each number a bound parameter."""
    found: list[exp.Expression] = []
    for index, (operator, value, *own) in enumerate(bounds):
        name = f"bound{index}"
        found.append(_COMPARE[operator](exp.column((own or [""])[0] or column), exp.Placeholder(this=name)))
        params[name] = number(value)
    return found


def restated(column: str, bounds: list[list[str]]) -> str:
    return "".join(f", {(own or [''])[0] or column} {WORDS[operator]} {value}" for operator, value, *own in bounds)


def unused(bounds: list[list[str]]) -> list[str]:
    return [f"{WORDS[operator]} {value}" for operator, value, *_ in bounds]


def price_or_size(bounds: list[list[str]], text: str, units: set[str]) -> str:
    """Trades: a number compares the price when the question speaks of
    prices, the size when it gives a size or an asset after the number
    ("over 2 BTC"); otherwise a clarifying question ('' when all are known)."""
    for bound in bounds:
        operator, value = bound[0], bound[1]
        after = re.search(rf"{re.escape(value)}\s*([a-z]+)", text)
        if re.search(r"\bprices?\b", text):
            bound[2] = "price"
        elif re.search(r"\bsizes?\b", text) or (after is not None and after.group(1) in units):
            bound[2] = "size"
        else:
            return f"Trades with a price or a size {WORDS[operator]} {value}? Say 'price' or 'size'."
    return ""

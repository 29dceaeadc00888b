"""Rewrites of checked trees for a target database, where sqlglot's own
translation is missing or wrong.

User SQL is PostgreSQL-flavoured. SQLite has no date_trunc, EXTRACT or
interval arithmetic; they are rewritten into strftime/julianday calls that
give the same values on the text timestamps Django stores
('YYYY-MM-DD HH:MM:SS[.ffffff]', UTC).
"""

from __future__ import annotations

from sqlglot import exp

from queryengine.allowlist import INTERVAL_UNITS

_TRUNC_FORMATS = {
    "SECOND": "%Y-%m-%d %H:%M:%S",
    "MINUTE": "%Y-%m-%d %H:%M:00",
    "HOUR": "%Y-%m-%d %H:00:00",
    "DAY": "%Y-%m-%d 00:00:00",
    "WEEK": "%Y-%m-%d 00:00:00",
    "MONTH": "%Y-%m-01 00:00:00",
    "YEAR": "%Y-01-01 00:00:00",
}
_EXTRACT_FORMATS = {
    "YEAR": "%Y",
    "MONTH": "%m",
    "DAY": "%d",
    "HOUR": "%H",
    "MINUTE": "%M",
    "DOW": "%w",
    "DOY": "%j",
}
_UNIX_EPOCH_JULIAN_DAY = "2440587.5"


def _call(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


def _sqlite_trunc(unit: str, value: exp.Expr) -> exp.Expr:
    args: list[exp.Expr] = [exp.Literal.string(_TRUNC_FORMATS[unit]), value]
    if unit == "WEEK":
        # PostgreSQL weeks start on Monday: the next Sunday (or today), back six days.
        args += [exp.Literal.string("weekday 0"), exp.Literal.string("-6 days")]
    return _call("strftime", *args)


def _sqlite_extract(field: str, value: exp.Expr) -> exp.Expr:
    if field == "EPOCH":
        seconds = exp.Mul(
            this=exp.Paren(
                this=exp.Sub(this=_call("julianday", value), expression=exp.Literal.number(_UNIX_EPOCH_JULIAN_DAY))
            ),
            expression=exp.Literal.number("86400.0"),
        )
        return exp.Round(this=seconds, decimals=exp.Literal.number(3))
    if field == "SECOND":
        return exp.Cast(this=_call("strftime", exp.Literal.string("%f"), value), to=exp.DataType.build("DOUBLE"))
    text = _call("strftime", exp.Literal.string(_EXTRACT_FORMATS[field]), value)
    return exp.Cast(this=text, to=exp.DataType.build("BIGINT"))


def _sqlite_shift(value: exp.Expr, interval: exp.Interval, sign: int) -> exp.Expr:
    amount = sign * int(interval.this.name)
    unit = INTERVAL_UNITS[interval.args["unit"].name.upper()]
    if unit == "weeks":
        amount, unit = amount * 7, "days"
    modifier = f"{amount:+d} {unit}"
    return _call("strftime", exp.Literal.string("%Y-%m-%d %H:%M:%f"), value, exp.Literal.string(modifier))


def to_sqlite(tree: exp.Expr) -> exp.Expr:
    """Rewrite date functions bottom-up (nested calls are rewritten first)."""
    for node in reversed(list(tree.walk(bfs=True))):
        replacement: exp.Expr | None = None
        if isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)):
            replacement = _sqlite_trunc(node.args["unit"].name.upper(), node.this)
        elif isinstance(node, exp.Extract):
            replacement = _sqlite_extract(node.this.name.upper(), node.expression)
        elif isinstance(node, (exp.Add, exp.Sub)) and isinstance(node.expression, exp.Interval):
            replacement = _sqlite_shift(node.this, node.expression, 1 if isinstance(node, exp.Add) else -1)
        if replacement is not None:
            if node is tree:
                tree = replacement
            else:
                node.replace(replacement)
    return tree

"""What a statement computes, read back from the statement itself.

A model's own description of its SQL ("total ETH-USD volume") may not be
what the SQL computes; the answer therefore also restates the statement
read through sqlglot, with the bound values shown in place of their
``:name`` placeholders (for display only: the statement runs with its
parameters, never with this text): "computed as sum(size) from trades
where symbol = 'ETH-USD', per venue, ordered by venue".
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp, parse_one
from sqlglot.errors import ParseError

MAX_CHARS = 400


def _shown(node: exp.Expr, params: dict[str, Any]) -> str:
    def bound(part: exp.Expr) -> exp.Expr:
        if isinstance(part, exp.Placeholder) and part.name in params:
            value = params[part.name]
            if isinstance(value, bool) or value is None:
                return exp.convert(value)
            return exp.Literal.number(value) if isinstance(value, int | float) else exp.Literal.string(str(value))
        return part

    return node.copy().transform(bound).sql(dialect="postgres")


def restate(sql: str, params: dict[str, Any] | None = None) -> str:
    """A short account of the statement ('' when it is not one SELECT)."""
    params = params or {}
    try:
        tree = parse_one(sql, dialect="postgres")
    except ParseError:
        return ""
    if not isinstance(tree, exp.Select):
        return ""
    columns = ", ".join(_shown(e.unalias() if isinstance(e, exp.Alias) else e, params) for e in tree.expressions)
    tables = ", ".join(dict.fromkeys(t.name for t in tree.find_all(exp.Table)))
    parts = [f"computed as {columns} from {tables}"]
    where = tree.args.get("where")
    if where is not None:
        parts[0] += f" where {_shown(where.this, params)}"
    group = tree.args.get("group")
    if group is not None:
        parts.append("per " + ", ".join(_shown(e, params) for e in group.expressions))
    order = tree.args.get("order")
    if order is not None:
        parts.append("ordered by " + ", ".join(_shown(e, params) for e in order.expressions))
    limit = tree.args.get("limit")
    if limit is not None and limit.expression is not None:
        parts.append(f"at most {_shown(limit.expression, params)} rows")
    text = ", ".join(parts)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"

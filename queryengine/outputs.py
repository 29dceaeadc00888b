"""The output columns of a compiled query: names for unnamed ones and the
public type of each. No Django."""

from __future__ import annotations

import re

from sqlglot import exp

from queryengine import allowlist

_AUTO_ALIAS_RE = re.compile(r"^_col_\d+$")
_DISPLAY_NAMES: dict[type[exp.Expr], str] = {
    exp.TimestampTrunc: "date_trunc",
    exp.DateTrunc: "date_trunc",
    exp.CurrentTimestamp: "now",
}


def _leftmost_select(tree: exp.Expr) -> exp.Select | None:
    node: exp.Expr | None = tree
    while isinstance(node, (exp.SetOperation, exp.Subquery)):
        node = node.this
    return node if isinstance(node, exp.Select) else None


def rename_unnamed_outputs(tree: exp.Expr) -> None:
    """Name unnamed result columns as PostgreSQL does (count, sum, ...,
    ?column?) on both databases, instead of sqlglot's _col_N. References
    to the old name (ORDER BY 2 becomes ORDER BY "_col_1") follow, unless
    the new name would be ambiguous."""
    select = _leftmost_select(tree)
    if select is None:
        return
    projections = select.expressions
    planned: dict[str, str] = {}
    for projection in projections:
        if isinstance(projection, exp.Alias) and _AUTO_ALIAS_RE.match(projection.alias):
            planned[projection.alias] = _display_name(projection.this)
    if not planned:
        return
    final_names = [planned.get(p.alias_or_name, p.alias_or_name) for p in projections]
    references = [
        column
        for column in tree.find_all(exp.Column)
        if not column.table
        and column.name in planned
        and any(column.find_ancestor(exp.Select, exp.SetOperation) is scope for scope in (select, tree))
    ]
    for old, new in planned.items():
        referenced = [column for column in references if column.name == old]
        if referenced and final_names.count(new) > 1:
            continue
        for column in referenced:
            column.set("this", exp.to_identifier(new, quoted=True))
        for projection in projections:
            if isinstance(projection, exp.Alias) and projection.alias == old:
                projection.set("alias", exp.to_identifier(new, quoted=True))


def _display_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Window):
        node = node.this
    if type(node) in _DISPLAY_NAMES:
        return _DISPLAY_NAMES[type(node)]
    entry = allowlist.FUNCTIONS.get(type(node)) if isinstance(node, exp.Func) else None
    if entry is not None:
        return entry[0]
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Column):
        return node.this.name
    return "?column?"


def public_type(data_type: exp.DataType | None) -> str:
    if data_type is None:
        return "unknown"
    kind = data_type.this
    if kind in exp.DataType.INTEGER_TYPES:
        return "integer"
    if kind in exp.DataType.FLOAT_TYPES:
        return "float"
    if kind in exp.DataType.REAL_TYPES:
        return "decimal"
    if kind in exp.DataType.TEXT_TYPES:
        return "text"
    name = kind.name
    if name == "BOOLEAN":
        return "boolean"
    if name == "DATE":
        return "date"
    if name in ("TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMPLTZ", "DATETIME"):
        return "timestamp"
    if name in ("JSON", "JSONB"):
        return "json"
    return "unknown"


def _projection_type(node: exp.Expr) -> str:
    inner = node.this if isinstance(node, exp.Alias) else node
    if isinstance(inner, (exp.TimestampTrunc, exp.DateTrunc, exp.CurrentTimestamp)):
        return "timestamp"
    if isinstance(inner, (exp.Add, exp.Sub)) and isinstance(inner.expression, exp.Interval):
        return "timestamp"
    if isinstance(inner, exp.Extract):
        return "float" if inner.this.name in ("EPOCH", "SECOND") else "integer"
    if isinstance(inner, (exp.Date, exp.CurrentDate)):
        return "date"
    return public_type(node.type)


def output_schema(tree: exp.Expr) -> list[dict[str, str]]:
    select = _leftmost_select(tree)
    if select is None:
        return []
    return [{"name": projection.alias_or_name, "type": _projection_type(projection)} for projection in select.selects]

"""Checks of a parsed query against the allowlist and the catalog: every
node (syntax, clauses, functions, CAST types), and every table reference
resolved lexically (a visible CTE or a catalog table). No Django."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp
from sqlglot.errors import SqlglotError

from queryengine import allowlist
from queryengine.catalog import RESERVED_PREFIX, Catalog
from queryengine.errors import QueryError, forbidden, invalid

SOURCE_DIALECT = "postgres"
MAX_NODES = 20_000
MAX_TABLE_REFERENCES = 32
_WRITE_NODES: tuple[type[exp.Expr], ...] = (exp.DML, exp.DDL, exp.Insert, exp.Update, exp.Delete, exp.Merge)
_FROM_POSITION = (exp.From, exp.Join)


def node_position(node: exp.Expr) -> tuple[int | None, int | None]:
    for candidate in node.walk():
        meta = candidate.meta if hasattr(candidate, "meta") else {}
        if "line" in meta and "col" in meta:
            return meta["line"], meta["col"]
    return None, None


def invalid_at(node: exp.Expr, message: str) -> QueryError:
    line, column = node_position(node)
    return invalid(message, line=line, column=column)


def forbidden_at(node: exp.Expr, message: str) -> QueryError:
    line, column = node_position(node)
    return forbidden(message, line=line, column=column)


def function_name(node: exp.Func, sql: str) -> str:
    meta = node.meta if hasattr(node, "meta") else {}
    start, end = meta.get("start"), meta.get("end")
    if isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < len(sql):
        return sql[start : end + 1].lower()
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    try:
        head = node.sql(SOURCE_DIALECT).split("(")[0].strip()
    except SqlglotError:
        head = ""
    return (head if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", head) else node.sql_name()).lower()


def used(value: Any) -> bool:
    return value is not None and value is not False and value != [] and value != ""


def check_tree(root: exp.Expr, sql: str, *, compiled: bool = False) -> None:
    """Every node of the tree must be allowlisted, with allowlisted clauses.
    ``compiled``: the tree after rewriting, where the catalog subqueries
    (trusted) are skipped and reserved names are the compiler's own."""
    count = 0
    stack: list[exp.Expr] = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise invalid("the query is too large")
        if compiled and isinstance(node, exp.Subquery) and "lc_catalog" in node.meta:
            continue
        check_node(node, sql, compiled)
        stack.extend(node.iter_expressions())


def check_node(node: exp.Expr, sql: str, compiled: bool = False) -> None:
    kind = type(node)
    if isinstance(node, _WRITE_NODES):
        raise invalid_at(node, f"only read-only SELECT statements are allowed (found {node.key.upper()})")
    if isinstance(node, exp.Command):
        word = str(node.this).split()[0].upper() if node.this else "command"
        raise invalid_at(node, f"only read-only SELECT statements are allowed (found {word[:30]})")
    if isinstance(node, exp.Func) and kind not in allowlist.SYNTAX:
        _check_function(node, sql)
        return
    allowed = allowlist.SYNTAX.get(kind)
    if allowed is None:
        raise invalid_at(node, f"unsupported SQL: {node.key.upper()}")
    for key, value in node.args.items():
        if used(value) and key not in allowed:
            raise _clause_error(node, key)
    _check_specific(node, compiled)


def _clause_error(node: exp.Expr, key: str) -> QueryError:
    if isinstance(node, exp.With) and key == "recursive":
        return invalid_at(node, "WITH RECURSIVE is not supported")
    if isinstance(node, exp.Select) and key == "into":
        return invalid_at(node, "SELECT ... INTO is not allowed: queries are read-only")
    if key == "locks":
        return invalid_at(node, "locking clauses (FOR UPDATE/SHARE) are not allowed")
    if isinstance(node, exp.Table) and key in ("db", "catalog"):
        return forbidden_at(node, f"schema-qualified table names are not allowed ({node.sql(SOURCE_DIALECT)[:60]})")
    if isinstance(node, exp.Column) and key in ("db", "catalog"):
        return forbidden_at(node, "schema-qualified column names are not allowed")
    if isinstance(node, exp.Table) and key == "joins":
        return invalid_at(node, "parenthesised joins are not supported; list the joins without parentheses")
    if isinstance(node, exp.Distinct) and key == "on":
        return invalid_at(node, "DISTINCT ON is not supported")
    if isinstance(node, exp.Select) and key == "laterals":
        return invalid_at(node, "LATERAL is not supported")
    return invalid_at(node, f"unsupported SQL: {key.rstrip('_').upper()} in {node.key.upper()}")


def _check_function(node: exp.Func, sql: str) -> None:
    entry = allowlist.FUNCTIONS.get(type(node))
    if entry is None:
        raise forbidden_at(node, f"function {function_name(node, sql)}() is not allowed")
    name, allowed = entry
    for key, value in node.args.items():
        if used(value) and key not in allowed:
            raise invalid_at(node, f"unsupported form of {name}()")
    if type(node) in (exp.Min, exp.Max) and node.args.get("expressions"):
        raise invalid_at(node, f"{name}() takes one argument; use greatest()/least()")
    if type(node) in allowlist.WINDOW_ONLY and not isinstance(node.parent, exp.Window):
        raise invalid_at(node, f"{name}() needs an OVER clause")
    if isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)):
        unit = node.args.get("unit")
        if not isinstance(unit, (exp.Var, exp.Literal)) or unit.name.upper() not in allowlist.TRUNC_UNITS:
            raise invalid_at(node, f"date_trunc() unit must be one of {', '.join(sorted(allowlist.TRUNC_UNITS))}")
        node.set("unit", exp.Var(this=unit.name.upper()))
    if isinstance(node, exp.Extract):
        part = node.this
        if not isinstance(part, (exp.Var, exp.Literal)) or part.name.upper() not in allowlist.EXTRACT_FIELDS:
            raise invalid_at(node, f"extract() field must be one of {', '.join(sorted(allowlist.EXTRACT_FIELDS))}")
        node.set("this", exp.Var(this=part.name.upper()))


def _check_specific(node: exp.Expr, compiled: bool) -> None:
    if isinstance(node, exp.With) and node.args.get("recursive"):
        raise invalid_at(node, "WITH RECURSIVE is not supported")
    if isinstance(node, exp.Var):
        parent = node.parent
        if not (
            isinstance(parent, (exp.TimestampTrunc, exp.DateTrunc, exp.Interval))
            or (isinstance(parent, exp.Extract) and node.arg_key == "this")
        ):
            raise invalid_at(node, f"unexpected keyword {node.name[:30]}")
    elif isinstance(node, exp.Placeholder):
        if not isinstance(node.this, str) or not node.this:
            raise invalid_at(node, "placeholders are ? (params as a list) or :name (params as an object)")
    elif isinstance(node, exp.Table):
        if not isinstance(node.this, exp.Identifier):
            raise forbidden_at(node, "table functions are not allowed")
    elif isinstance(node, (exp.From, exp.Join)):
        if not isinstance(node.this, (exp.Table, exp.Subquery)):
            raise forbidden_at(node, "only catalog tables, CTEs and subqueries may appear in FROM")
        if isinstance(node, exp.Join):
            _check_join(node)
    elif isinstance(node, exp.Subquery):
        if not isinstance(node.this, (exp.Select, exp.SetOperation, exp.Subquery)):
            raise invalid_at(node, "unsupported subquery")
    elif isinstance(node, exp.Cast):
        to = node.args.get("to")
        if not isinstance(to, exp.DataType) or _type_name(to) not in allowlist.CAST_TYPES:
            raise forbidden_at(node, f"CAST to {to.sql(SOURCE_DIALECT) if to else '?'} is not allowed")
    elif isinstance(node, exp.DataType):
        if _type_name(node) not in allowlist.CAST_TYPES:
            raise forbidden_at(node, f"type {node.sql(SOURCE_DIALECT)} is not allowed")
    elif isinstance(node, exp.DataTypeParam):
        if not isinstance(node.this, exp.Literal) or node.this.is_string:
            raise invalid_at(node, "type parameters must be numbers")
    elif isinstance(node, exp.Interval):
        _check_interval(node)
    elif isinstance(node, exp.Window):
        inner = node.this
        named_definition = node.arg_key == "windows" and isinstance(inner, exp.Identifier)
        if not (named_definition or type(inner) in allowlist.AGGREGATES or type(inner) in allowlist.FUNCTIONS):
            raise invalid_at(node, "OVER applies to aggregate and window functions only")
    elif isinstance(node, exp.Identifier) and not compiled and str(node.this).startswith(RESERVED_PREFIX):
        raise forbidden_at(node, f"names starting with {RESERVED_PREFIX!r} are reserved")


def _type_name(data_type: exp.DataType) -> str:
    kind = data_type.this
    return kind.name if isinstance(kind, exp.DataType.Type) else str(kind).upper()


def _check_join(node: exp.Join) -> None:
    side = str(node.args.get("side") or "").upper()
    kind = str(node.args.get("kind") or "").upper()
    method = str(node.args.get("method") or "").upper()
    if side not in allowlist.JOIN_SIDES or kind not in allowlist.JOIN_KINDS or method not in allowlist.JOIN_METHODS:
        raise invalid_at(node, f"unsupported join {' '.join(filter(None, (method, side, kind)))}")


def _check_interval(node: exp.Interval) -> None:
    parent = node.parent
    if not isinstance(parent, (exp.Add, exp.Sub)) or node.arg_key != "expression":
        raise invalid_at(node, "intervals may only be added to or subtracted from a timestamp")
    amount, unit = node.this, node.args.get("unit")
    if (
        not isinstance(amount, exp.Literal)
        or not re.fullmatch(r"[+-]?\d{1,9}", amount.name.strip())
        or not isinstance(unit, exp.Var)
        or unit.name.upper() not in allowlist.INTERVAL_UNITS
    ):
        raise invalid_at(
            node, "intervals are written INTERVAL 'N unit' with unit second, minute, hour, day, week, month or year"
        )
    node.set("this", exp.Literal.string(str(int(amount.name.strip()))))
    node.set("unit", exp.Var(this=unit.name.upper()))


# --------------------------------------------------------------- tables


@dataclass
class Resolution:
    catalog_refs: list[exp.Table] = field(default_factory=list)
    cte_refs: list[tuple[exp.Table, exp.CTE]] = field(default_factory=list)
    ctes: list[exp.CTE] = field(default_factory=list)


def resolve_tables(root: exp.Expr) -> Resolution:
    """Which table references name a CTE (lexically visible, earlier in its
    WITH or an enclosing one) and which name a catalog table."""
    result = Resolution()

    def visit(node: exp.Expr, visible: dict[str, exp.CTE]) -> None:
        with_ = node.args.get("with_") if isinstance(node, (exp.Query, exp.Subquery)) else None
        if isinstance(with_, exp.With):
            scope = dict(visible)
            for cte in with_.expressions:
                visit(cte.this, scope)
                result.ctes.append(cte)
                scope[cte.alias_or_name] = cte
            for key, value in node.args.items():
                if key != "with_":
                    for child in value if isinstance(value, list) else [value]:
                        if isinstance(child, exp.Expr):
                            visit(child, scope)
            return
        if isinstance(node, exp.Table):
            cte = visible.get(node.name)
            if cte is not None and not node.args.get("db") and not node.args.get("catalog"):
                result.cte_refs.append((node, cte))
            else:
                result.catalog_refs.append(node)
            return
        for child in node.iter_expressions():
            visit(child, visible)

    visit(root, {})
    return result


def check_tables(resolution: Resolution, catalog: Catalog) -> None:
    if len(resolution.catalog_refs) + len(resolution.cte_refs) > MAX_TABLE_REFERENCES:
        raise invalid(f"at most {MAX_TABLE_REFERENCES} table references per query")
    for table in resolution.catalog_refs:
        if table.args.get("db") or table.args.get("catalog"):
            raise forbidden_at(table, "schema-qualified table names are not allowed")
        if table.name not in catalog:
            raise forbidden_at(table, f"table {table.name[:60]!r} is not in the query catalog")

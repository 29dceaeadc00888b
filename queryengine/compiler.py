"""User SQL -> checked, tenant-guarded SQL for one database. No Django.

The pipeline fails closed at every step:

1. tokenize and parse (PostgreSQL-flavoured SQL, sqlglot); exactly one
   statement; positional ``?`` placeholders are numbered from their tokens
   so that binding follows the text;
2. check every node of the tree against the allowlist (syntax, clauses,
   functions, CAST types), refusing writes anywhere, SELECT INTO, locking
   clauses, recursive CTEs, table functions, unknown functions;
3. resolve every table reference lexically: a visible CTE, or a catalog
   table; anything else (real tables, system catalogs, schema-qualified
   names) is refused;
4. qualify and type the columns against the catalog (unknown columns are
   named in the error), which also expands ``*`` to public columns only;
5. replace every catalog table reference by a subquery over the real
   tables exposing only public columns, filtered on the caller for private
   tables; rename CTEs to reserved names, so the regenerated SQL can name no
   real table except inside those subqueries;
6. cap the outermost LIMIT, re-check the tree, and regenerate SQL for the
   target database from the tree (never the caller's text), with
   parameters in the driver's style.

Steps 2 and 3 are ``queryengine.checks``; the output columns' names and
types are ``queryengine.outputs``.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, OptimizeError, ParseError, SqlglotError, TokenError, UnsupportedError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify import qualify
from sqlglot.tokens import Token, TokenType

from queryengine import dialects
from queryengine.catalog import APPLICATION_PARAM, RESERVED_PREFIX, USER_PARAM, Catalog, Scope
from queryengine.checks import (
    SOURCE_DIALECT,
    check_tables,
    check_tree,
    invalid_at,
    resolve_tables,
)
from queryengine.errors import QueryError, forbidden, invalid
from queryengine.outputs import output_schema, public_type, rename_unnamed_outputs

# sqlglot logs every statement it falls back to parsing as a Command, with
# the statement's text; user SQL does not belong in the server log.
logging.getLogger("sqlglot").setLevel(logging.ERROR)
log = logging.getLogger(__name__)

TargetDialect = Literal["sqlite", "postgres"]

MAX_SQL_CHARS = 100_000
MAX_PARAM_TEXT = 100_000
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
INT64 = 2**63

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Caller:
    user_pk: int
    application_id: str


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    params: dict[str, Any]
    dialect: TargetDialect
    # [{name, type}], public types ("unknown" when not derivable).
    schema: list[dict[str, str]]
    # Rows to deliver at most; the SQL asks for one more (when the cap, not
    # the caller's own LIMIT, binds) so that a cut result can be told apart.
    max_rows: int
    limit: int
    tables: tuple[str, ...]
    # Real table -> real columns the query may read (the SQLite authorizer).
    reads: dict[str, frozenset[str]] = field(default_factory=dict)


# --------------------------------------------------------------- parameters


def _check_value(name: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str) and len(value) > MAX_PARAM_TEXT:
            raise invalid(f"parameter {name}: text longer than {MAX_PARAM_TEXT} characters")
        return value
    if isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise invalid(f"parameter {name}: integer out of the 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise invalid(f"parameter {name}: number must be finite")
        return value
    raise invalid(f"parameter {name}: only null, booleans, numbers and strings can be bound")


def _normalise_params(params: Any) -> tuple[str, list[Any] | dict[str, Any]]:
    if params is None:
        return "none", []
    if isinstance(params, (list, tuple)):
        return "positional", [_check_value(f"#{index + 1}", value) for index, value in enumerate(params)]
    if isinstance(params, dict):
        checked: dict[str, Any] = {}
        for name, value in params.items():
            if not isinstance(name, str) or not PARAM_NAME_RE.match(name):
                raise invalid(f"parameter name {str(name)[:40]!r} must match {PARAM_NAME_RE.pattern}")
            if name.startswith(RESERVED_PREFIX):
                raise forbidden(f"parameter names starting with {RESERVED_PREFIX!r} are reserved")
            checked[name] = _check_value(name, value)
        return "named", checked
    raise invalid("params must be a list (for ? placeholders) or an object (for :name placeholders)")


# --------------------------------------------------------------- parsing


def _parse(sql: str, style: str, nonce: str) -> tuple[exp.Expr, int]:
    """One statement; ``?`` tokens become named placeholders numbered in
    text order. Returns the tree and the number of ``?`` placeholders."""
    dialect = Dialect.get_or_raise(SOURCE_DIALECT)
    try:
        tokens = dialect.tokenize(sql)
    except TokenError as exc:
        raise invalid(f"could not read the SQL: {_clean(str(exc))}") from None
    rewritten: list[Token] = []
    positional = 0
    previous: Token | None = None
    for token in tokens:
        if previous is not None and previous.token_type == TokenType.COLON and token.text.startswith(RESERVED_PREFIX):
            raise forbidden(
                f"placeholder names starting with {RESERVED_PREFIX!r} are reserved", line=token.line, column=token.col
            )
        if token.token_type == TokenType.PLACEHOLDER and token.text == "?":
            positional += 1
            rewritten.append(Token(TokenType.COLON, ":", token.line, token.col, token.start, token.start))
            name = f"{nonce}{positional}"
            rewritten.append(Token(TokenType.VAR, name, token.line, token.col, token.start, token.end))
        else:
            rewritten.append(token)
        previous = token
    try:
        statements = [s for s in dialect.parser(error_level=ErrorLevel.IMMEDIATE).parse(rewritten, sql) if s]
    except ParseError as exc:
        detail = exc.errors[0] if exc.errors else {}
        description = _clean(str(detail.get("description") or exc))
        raise invalid(f"syntax error: {description}", line=detail.get("line"), column=detail.get("col")) from None
    except RecursionError:
        raise invalid("the query is nested too deeply") from None
    except SqlglotError as exc:
        raise invalid(f"could not parse the SQL: {_clean(str(exc))}") from None
    if not statements:
        raise invalid("empty query: write one SELECT statement")
    if len(statements) > 1:
        raise invalid("exactly one statement is allowed (found several separated by ';')")
    if positional and style == "named":
        raise invalid("? placeholders need params as a list; use :name placeholders with an object")
    return statements[0], positional


_UNRESOLVED_RE = re.compile(
    r"^Column '(?P<column>[^']*)' could not be resolved(?: for table: '(?P<table>[^']*)')?\.?"
    r"(?: Line: (?P<line>\d+), Col: (?P<col>\d+))?"
)
_UNKNOWN_RE = re.compile(r"^Unknown column: (?P<column>.+)$")


def _optimizer_error(message: str) -> QueryError:
    """sqlglot's column errors, reworded for the caller."""
    text = _clean(message)
    match = _UNRESOLVED_RE.match(text)
    if match:
        column = match["column"].strip('"')
        name = f"{match['table'].strip(chr(34))}.{column}" if match["table"] else column
        line = int(match["line"]) if match["line"] else None
        col = int(match["col"]) if match["col"] else None
        return invalid(f"unknown column {name!r}", line=line, column=col)
    match = _UNKNOWN_RE.match(text)
    if match:
        return invalid(f"unknown column {match['column'].strip(chr(34))!r}")
    return invalid(text)


def _clean(message: str) -> str:
    return _ANSI_RE.sub("", message).split("\n")[0].strip()


# --------------------------------------------------------------- compile


def compile_query(
    sql: str,
    params: Any,
    catalog: Catalog,
    caller: Caller,
    *,
    dialect: TargetDialect,
    max_rows: int,
    default_limit: int,
) -> CompiledQuery:
    """Check user SQL and compile it for ``dialect``; raises QueryError."""
    if dialect not in ("sqlite", "postgres"):
        raise ValueError(f"unsupported dialect {dialect!r}")
    if not isinstance(sql, str) or not sql.strip():
        raise invalid("empty query: write one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise invalid(f"the query is longer than {MAX_SQL_CHARS} characters")
    if "\x00" in sql:
        raise invalid("the query contains a NUL character")
    max_rows = max(1, max_rows)
    default_limit = max(1, min(default_limit, max_rows))

    style, values = _normalise_params(params)
    nonce = _nonce(sql)
    try:
        return _compile(sql, style, values, nonce, catalog, caller, dialect, max_rows, default_limit)
    except QueryError:
        raise
    except RecursionError:
        raise invalid("the query is nested too deeply") from None
    except Exception:
        # A parser or optimizer failure on a strange tree: refuse the query.
        log.warning("could not analyse a query", exc_info=True)
        raise invalid("could not analyse the query") from None


def _nonce(sql: str) -> str:
    while True:
        nonce = f"lcq{secrets.token_hex(6)}x"
        if nonce not in sql:
            return nonce


def _compile(
    sql: str,
    style: str,
    values: list[Any] | dict[str, Any],
    nonce: str,
    catalog: Catalog,
    caller: Caller,
    dialect: TargetDialect,
    max_rows: int,
    default_limit: int,
) -> CompiledQuery:
    tree, positional = _parse(sql, style, nonce)
    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        found = str(tree.this).split()[0] if isinstance(tree, exp.Command) and tree.this else tree.key
        raise invalid_at(tree, f"only read-only SELECT statements are allowed (found {found[:30].upper()})")
    check_tree(tree, sql)

    bound = _bind(tree, style, values, positional, nonce)
    tree = normalize_identifiers(tree, dialect=SOURCE_DIALECT)
    check_tables(resolve_tables(tree), catalog)

    schema_map: dict[str, object] = dict(catalog.schema())
    try:
        tree = qualify(tree, dialect=SOURCE_DIALECT, schema=schema_map, sql=sql, identify=True)
        annotate_types(tree, schema=schema_map, dialect=SOURCE_DIALECT)
    except OptimizeError as exc:
        raise _optimizer_error(str(exc)) from None
    except SqlglotError as exc:
        raise invalid(f"could not analyse the query: {_clean(str(exc))}") from None
    rename_unnamed_outputs(tree)
    schema = output_schema(tree)

    tables, reads, uses_owner = _rewrite_tables(tree, catalog)
    limit, row_cap = _apply_limits(tree, bound, max_rows, default_limit)
    check_tree(tree, sql, compiled=True)
    _verify_sources(tree)

    if uses_owner:
        bound[USER_PARAM] = caller.user_pk
        bound[APPLICATION_PARAM] = caller.application_id
    target_tree = dialects.to_sqlite(tree) if dialect == "sqlite" else tree
    text, final_params = _generate(target_tree, bound, dialect, nonce)
    return CompiledQuery(
        sql=text,
        params=final_params,
        dialect=dialect,
        schema=schema,
        max_rows=row_cap,
        limit=limit,
        tables=tuple(sorted(tables)),
        reads=reads,
    )


def _bind(
    tree: exp.Expr, style: str, values: list[Any] | dict[str, Any], positional: int, nonce: str
) -> dict[str, Any]:
    """Parameter name in the tree -> value; every placeholder bound, every
    parameter used."""
    names = {node.name for node in tree.find_all(exp.Placeholder)}
    if style == "none":
        if names:
            raise invalid("the query has placeholders but no params were given")
        return {}
    if style == "positional":
        assert isinstance(values, list)
        if any(not name.startswith(nonce) for name in names):
            raise invalid(":name placeholders need params as an object; use ? with a list")
        if positional != len(values):
            raise invalid(f"the query has {positional} ? placeholder(s) but {len(values)} param(s) were given")
        return {f"{nonce}{index + 1}": value for index, value in enumerate(values)}
    assert isinstance(values, dict)
    missing = sorted(names - set(values))
    if missing:
        raise invalid(f"no value given for placeholder(s): {', '.join(':' + name for name in missing[:10])}")
    unused = sorted(set(values) - names)
    if unused:
        raise invalid(f"param(s) not used by the query: {', '.join(unused[:10])}")
    return dict(values)


def _rewrite_tables(tree: exp.Expr, catalog: Catalog) -> tuple[set[str], dict[str, frozenset[str]], bool]:
    resolution = resolve_tables(tree)
    renamed = {id(cte): f"__lc_cte_{index + 1}" for index, cte in enumerate(resolution.ctes)}
    for table, cte in resolution.cte_refs:
        alias = table.alias_or_name
        table.set("this", exp.to_identifier(renamed[id(cte)], quoted=True))
        table.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
    for cte in resolution.ctes:
        alias = cte.args["alias"]
        alias.set("this", exp.to_identifier(renamed[id(cte)], quoted=True))

    tables: set[str] = set()
    reads: dict[str, set[str]] = {}
    uses_owner = False
    for table in resolution.catalog_refs:
        entry = catalog.get(table.name)
        if entry is None:  # checked before qualification; never trust a second look less
            raise forbidden(f"table {table.name[:60]!r} is not in the query catalog")
        alias = table.alias_or_name
        if table.args.get("alias") is not None and table.args["alias"].args.get("columns"):
            raise invalid_at(table, "column aliases on a catalog table are not supported")
        table.replace(entry.subquery(alias))
        tables.add(entry.table.name)
        uses_owner = uses_owner or entry.table.scope == Scope.PRIVATE
        for real, columns in entry.reads.items():
            reads.setdefault(real, set()).update(columns)
    return tables, {real: frozenset(columns) for real, columns in reads.items()}, uses_owner


def _verify_sources(tree: exp.Expr) -> None:
    """Defence in depth: outside the catalog subqueries, a table reference
    can only name a renamed CTE."""
    stack: list[exp.Expr] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Subquery) and "lc_catalog" in node.meta:
            continue
        if isinstance(node, exp.Table) and not (
            isinstance(node.this, exp.Identifier)
            and node.name.startswith("__lc_cte_")
            and not node.args.get("db")
            and not node.args.get("catalog")
        ):
            raise forbidden("the query references a table outside the catalog")
        stack.extend(node.iter_expressions())


def _integer_value(node: exp.Expr | None, bound: dict[str, Any], clause: str) -> int:
    if isinstance(node, exp.Literal) and not node.is_string and re.fullmatch(r"\d{1,18}", node.name):
        return int(node.name)
    if isinstance(node, exp.Placeholder):
        value = bound.get(node.name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < INT64:
            return value
        raise invalid(f"the {clause} parameter must be a non-negative integer")
    raise invalid(f"{clause} must be a non-negative integer or a parameter")


def _apply_limits(tree: exp.Expr, bound: dict[str, Any], max_rows: int, default_limit: int) -> tuple[int, int]:
    for node in list(tree.find_all(exp.Limit, exp.Offset, exp.Fetch)):
        if isinstance(node, exp.Fetch):
            raise invalid("FETCH FIRST is not supported; use LIMIT")
        _integer_value(node.args.get("expression"), bound, node.key.upper())
    outer = tree.args.get("limit")
    if outer is None:
        limit, row_cap = default_limit + 1, default_limit
    else:
        asked = _integer_value(outer.args.get("expression"), bound, "LIMIT")
        limit, row_cap = min(asked, max_rows + 1), max_rows
    tree.set("limit", exp.Limit(expression=exp.Literal.number(limit)))
    offset = tree.args.get("offset")
    if offset is not None and isinstance(offset.args.get("expression"), exp.Placeholder):
        value = _integer_value(offset.args.get("expression"), bound, "OFFSET")
        offset.set("expression", exp.Literal.number(value))
    return limit, row_cap


def _generate(tree: exp.Expr, bound: dict[str, Any], dialect: TargetDialect, nonce: str) -> tuple[str, dict[str, Any]]:
    """SQL text for the driver. Placeholders are first rendered under
    unguessable names, so that escaping every '%' for psycopg (literal
    percent signs in strings, the modulo operator) cannot touch them."""
    used: dict[str, str] = {}
    final_params: dict[str, Any] = {}
    for index, node in enumerate(list(tree.find_all(exp.Placeholder))):
        name = node.name
        if name not in bound:
            raise invalid(f"no value given for placeholder :{name}")
        final = name if not name.startswith(nonce) else f"__lc_p{name[len(nonce) :]}"
        marker = f"{nonce}m{index}"
        used[marker] = final
        final_params[final] = bound[name]
        node.set("this", marker)
    try:
        text = tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE, comments=False)
    except UnsupportedError as exc:
        raise invalid(f"not supported on this database: {_clean(str(exc))}") from None
    if dialect == "postgres":
        text = text.replace("%", "%%")
        for marker, final in used.items():
            text = text.replace(f"%%({marker})s", f"%({final})s")
    else:
        for marker, final in used.items():
            text = re.sub(rf":{re.escape(marker)}(?![A-Za-z0-9_])", f":{final}", text)
    if nonce in text:
        raise invalid("could not bind the query's parameters")
    return text, final_params


__all__ = ["Caller", "CompiledQuery", "QueryError", "TargetDialect", "compile_query", "public_type", "sqlglot"]

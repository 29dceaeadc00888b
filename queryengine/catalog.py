"""The catalog: the virtual tables user SQL may read, mapped to real tables.

Plain Python (no Django import), so that the compiler and its tests stand
alone. A virtual table has a stable public name and public columns, each an
SQL expression over the real table(s) of its ``source``. Public names are
the contract with users; the real side may change with the models.

A *private* table is scoped to the caller: its source names the real
columns holding the user's primary key and the application id, and every
reference to the table in user SQL is compiled into a subquery filtered on
them, with the caller's values bound under reserved parameter names
(``__lc_user``, ``__lc_app``) that user parameters can never take.

Apps register their tables once at startup (``AppConfig.ready``)::

    from queryengine.catalog import Column, Table, register_table

    register_table(Table(
        name="trades",
        description="Executed trades, every venue.",
        source="marketdata_trade AS t",
        columns=(
            Column("trade_id", "integer", "t.id"),
            Column("price", "decimal", "t.price"),
        ),
    ))

For Django models, ``queryengine.tables.register_model_table`` derives the
real table and column names from the model.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlglot
from sqlglot import exp

USER_PARAM = "__lc_user"
APPLICATION_PARAM = "__lc_app"
RESERVED_PREFIX = "__"

# Public column types and the SQL types the compiler reasons with.
PUBLIC_TYPES: dict[str, str] = {
    "integer": "BIGINT",
    "float": "DOUBLE PRECISION",
    "decimal": "DECIMAL",
    "text": "TEXT",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
    "json": "JSON",
}

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_REAL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class CatalogError(ValueError):
    """A table definition that the catalog refuses (a programming error)."""


class Scope(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    expression: str
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    # FROM clause over real tables, every table aliased:
    # "credits_ledgerentry AS e JOIN credits_creditaccount AS a ON a.id = e.account_id"
    source: str
    description: str = ""
    scope: Scope = Scope.PUBLIC
    # Private tables: the real columns (alias-qualified) holding the owner.
    user_column: str | None = None
    application_column: str | None = None
    # Optional fixed predicate over the source (e.g. hide soft-deleted rows).
    condition: str | None = None

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class RegisteredTable:
    """A validated table: the subquery that replaces it in user SQL and the
    real tables and columns that subquery reads."""

    table: Table
    template: exp.Select
    reads: dict[str, frozenset[str]] = field(default_factory=dict)

    def subquery(self, alias: str) -> exp.Subquery:
        node = exp.Subquery(
            this=self.template.copy(),
            alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)),
        )
        node.meta["lc_catalog"] = self.table.name
        return node


def _build(table: Table) -> RegisteredTable:
    if not NAME_RE.match(table.name):
        raise CatalogError(f"table name {table.name!r} must match {NAME_RE.pattern}")
    if not table.columns:
        raise CatalogError(f"table {table.name!r} has no columns")
    seen: set[str] = set()
    for column in table.columns:
        if not NAME_RE.match(column.name):
            raise CatalogError(f"{table.name}.{column.name}: column names must match {NAME_RE.pattern}")
        if column.name in seen:
            raise CatalogError(f"{table.name}.{column.name}: duplicate column")
        if column.type not in PUBLIC_TYPES:
            raise CatalogError(f"{table.name}.{column.name}: type must be one of {', '.join(PUBLIC_TYPES)}")
        seen.add(column.name)

    guards = []
    if table.scope == Scope.PRIVATE:
        if not table.user_column or not table.application_column:
            raise CatalogError(f"private table {table.name!r} needs user_column and application_column")
        guards = [
            f"({table.user_column}) = :{USER_PARAM}",
            f"({table.application_column}) = :{APPLICATION_PARAM}",
        ]
    elif table.user_column or table.application_column:
        raise CatalogError(f"public table {table.name!r} must not name owner columns")
    if table.condition:
        guards.append(f"({table.condition})")

    projections = ", ".join(f'{column.expression} AS "{column.name}"' for column in table.columns)
    # Registered by the apps' own code at startup, never from user input.
    text = f"SELECT {projections} FROM {table.source}"  # noqa: S608
    if guards:
        text += " WHERE " + " AND ".join(guards)
    try:
        statements = sqlglot.parse(text, read="postgres")
    except sqlglot.errors.SqlglotError as exc:
        raise CatalogError(f"table {table.name!r}: cannot parse its definition: {exc}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Select):
        raise CatalogError(f"table {table.name!r}: the definition must be one SELECT")
    template = statements[0]
    return RegisteredTable(table, template, _reads(table.name, template))


def _reads(name: str, template: exp.Select) -> dict[str, frozenset[str]]:
    """Real table -> real columns the template reads. Every column must be
    qualified by a source alias, so that the set is exact (the SQLite
    authorizer and the PostgreSQL grants are built from it)."""
    aliases: dict[str, str] = {}
    for table in template.find_all(exp.Table):
        if table.args.get("db") or table.args.get("catalog"):
            raise CatalogError(f"table {name!r}: real tables must not be schema-qualified")
        real = table.name
        if not _REAL_NAME_RE.match(real):
            raise CatalogError(f"table {name!r}: bad real table name {real!r}")
        alias = table.alias_or_name
        if alias in aliases and aliases[alias] != real:
            raise CatalogError(f"table {name!r}: alias {alias!r} used twice")
        aliases[alias] = real
    reads: dict[str, set[str]] = {real: set() for real in aliases.values()}
    for column in template.find_all(exp.Column):
        qualifier = column.table
        if not qualifier or qualifier not in aliases:
            raise CatalogError(f"table {name!r}: column {column.sql()!r} must be qualified by a source alias")
        if not _REAL_NAME_RE.match(column.name):
            raise CatalogError(f"table {name!r}: bad real column name {column.name!r}")
        reads[aliases[qualifier]].add(column.name)
    for placeholder in template.find_all(exp.Placeholder):
        if placeholder.name not in (USER_PARAM, APPLICATION_PARAM):
            raise CatalogError(f"table {name!r}: only the reserved owner parameters may appear")
    return {real: frozenset(columns) for real, columns in reads.items()}


class Catalog:
    """A set of registered tables; the process-wide one is ``catalog``."""

    def __init__(self, tables: Iterable[Table] = ()) -> None:
        self._tables: dict[str, RegisteredTable] = {}
        self._lock = threading.Lock()
        for table in tables:
            self.register(table)

    def register(self, table: Table, *, replace: bool = False) -> RegisteredTable:
        registered = _build(table)
        with self._lock:
            if table.name in self._tables and not replace and self._tables[table.name].table != table:
                raise CatalogError(f"table {table.name!r} is already registered")
            self._tables[table.name] = registered
        return registered

    def unregister(self, name: str) -> None:
        with self._lock:
            self._tables.pop(name, None)

    def get(self, name: str) -> RegisteredTable | None:
        return self._tables.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tables

    def tables(self) -> list[Table]:
        return [entry.table for _, entry in sorted(self._tables.items())]

    def schema(self) -> dict[str, dict[str, str]]:
        """Public columns and SQL types, as sqlglot's optimizer wants them."""
        return {
            entry.table.name: {column.name: PUBLIC_TYPES[column.type] for column in entry.table.columns}
            for entry in self._tables.values()
        }

    def reads(self) -> dict[str, frozenset[str]]:
        """Every real table and column any catalog table reads."""
        merged: dict[str, set[str]] = {}
        for entry in self._tables.values():
            for real, columns in entry.reads.items():
                merged.setdefault(real, set()).update(columns)
        return {real: frozenset(columns) for real, columns in merged.items()}

    def public_only_tables(self) -> frozenset[str]:
        """Real tables that only public catalog tables read: reading no
        column of them (a row count) tells nothing private."""
        public: set[str] = set()
        private: set[str] = set()
        for entry in self._tables.values():
            (public if entry.table.scope == Scope.PUBLIC else private).update(entry.reads)
        return frozenset(public - private)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": table.name,
                "description": table.description,
                "scope": str(table.scope),
                "columns": [
                    {"name": column.name, "type": column.type, "description": column.description}
                    for column in table.columns
                ],
            }
            for table in self.tables()
        ]


catalog = Catalog()


def register_table(table: Table, *, replace: bool = False) -> RegisteredTable:
    """Add a table to the process-wide catalog (call from AppConfig.ready)."""
    return catalog.register(table, replace=replace)

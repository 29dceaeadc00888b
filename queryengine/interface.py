"""What the other apps may use of the query engine (import-linter enforces
it): registering tables in the catalog, compiling and running a statement
as a caller, cancelling it, and the errors and records it leaves."""

from __future__ import annotations

from queryengine import errors
from queryengine.catalog import Column, Scope, Table, catalog, register_table
from queryengine.compiler import Caller, compile_query
from queryengine.errors import QueryError, QueryFailed
from queryengine.executor import CancelHandle
from queryengine.models import QueryRecord
from queryengine.services import run_query

__all__ = [
    "Caller",
    "CancelHandle",
    "Column",
    "QueryError",
    "QueryFailed",
    "QueryRecord",
    "Scope",
    "Table",
    "catalog",
    "compile_query",
    "errors",
    "register_table",
    "run_query",
]

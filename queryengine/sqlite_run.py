"""Running a compiled query on SQLite: the file opened read-only with
``query_only``, an authorizer allowing exactly the catalog's real columns
and the allowlisted functions, and a progress handler that stops the
statement at the time limit or on cancellation."""

from __future__ import annotations

import logging
import sqlite3
import urllib.parse
from collections.abc import Callable, Mapping

from queryengine import allowlist, errors
from queryengine.catalog import catalog
from queryengine.errors import QueryError
from queryengine.execution import SQLITE_BATCH, SQLITE_ROWS_PER_MS, SQLITE_TICK_INSTRUCTIONS, ExecutionResult, Run

log = logging.getLogger(__name__)

# SQLite messages that are the server's problem, not the query's.
_SQLITE_INFRASTRUCTURE = (
    "unable to open",
    "disk i/o",
    "database is locked",
    "malformed",
    "no such table",
    "out of memory",
    "readonly",
    "not a database",
)


Authorizer = Callable[[int, str | None, str | None, str | None, str | None], int]


def sqlite_authorizer(reads: Mapping[str, frozenset[str]]) -> Authorizer:
    allowed_functions = allowlist.SQLITE_FUNCTIONS
    rowid_tables = catalog.public_only_tables()

    def authorize(action: int, arg1: str | None, arg2: str | None, database: str | None, source: str | None) -> int:
        if action == sqlite3.SQLITE_SELECT:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            columns = reads.get(arg1 or "")
            if columns is not None and database == "main" and arg2 in columns:
                return sqlite3.SQLITE_OK
            # An empty column name is a read of no column (count(*), a join
            # that only uses the rowid): allowed on tables only public
            # catalog tables map, where a row count tells nothing private.
            if columns is not None and database in ("main", None) and arg2 == "" and arg1 in rowid_tables:
                return sqlite3.SQLITE_OK
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in allowed_functions:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    return authorize


def _sqlite_estimated_rows(connection: sqlite3.Connection, reads: Mapping[str, frozenset[str]]) -> int:
    total = 0
    for table in reads:
        try:
            row = connection.execute(f'SELECT max(rowid) FROM "{table}"').fetchone()  # noqa: S608 (catalog name)
        except sqlite3.Error:
            continue
        total += int(row[0] or 0) if row else 0
    return total


def execute_sqlite(run: Run) -> ExecutionResult:
    path = run.target.sqlite_path
    uri = f"file:{urllib.parse.quote(path)}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=5.0)
    except sqlite3.Error:
        log.exception("could not open %s read-only for a query", path)
        raise QueryError(errors.INTERNAL, "the database is not available") from None
    try:
        connection.execute("PRAGMA query_only = ON")
        rows = _sqlite_estimated_rows(connection, run.query.reads)
        run.estimated(1 + rows // SQLITE_ROWS_PER_MS, None)
        connection.set_authorizer(sqlite_authorizer(run.query.reads))
        connection.set_progress_handler(run.sqlite_tick, SQLITE_TICK_INSTRUCTIONS)
        run.cancel.attach(connection.interrupt)
        run.check()
        cursor = connection.execute(run.query.sql, dict(run.query.params))
        return run.stream(cursor, SQLITE_BATCH)
    except sqlite3.Error as exc:
        raise _sqlite_error(run, exc) from None
    finally:
        run.cancel.detach()
        connection.close()


def _sqlite_error(run: Run, exc: sqlite3.Error) -> QueryError:
    stop = run.stopped()
    if stop is not None:
        return stop
    message = str(exc)
    lowered = message.lower()
    if "not authorized" in lowered or "prohibited" in lowered:
        log.warning("the SQLite authorizer denied a compiled query: %s", run.query.sql[:500])
        return QueryError(errors.UNAUTHORIZED, "the query tried to read something outside the query catalog")
    if "interrupted" in lowered:
        return QueryError(errors.CANCELLED, "the query was interrupted")
    if isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.InternalError)) or any(
        marker in lowered for marker in _SQLITE_INFRASTRUCTURE
    ):
        log.error("query failed in SQLite: %s", message)
        return QueryError(errors.INTERNAL, "the database failed to run the query")
    return QueryError(errors.VALIDATION_FAILED, run.sanitize(message))

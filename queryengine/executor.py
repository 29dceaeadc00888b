"""Running compiled queries on their own read-only database connections.

Never Django's connection objects: a query holds its connection for as long
as it streams, on the caller's (worker) thread, so the thread that serves
the ORM to every other socket is never blocked by it.

Defence in depth, on top of the compiler:

- SQLite: the file opened with ``mode=ro`` and ``query_only``; an
  authorizer that allows SELECT, reads of exactly the real columns the
  query's catalog tables map, and allowlisted functions, and denies
  everything else (PRAGMA, ATTACH, writes, recursive CTEs, sqlite_master,
  load_extension ...); a progress handler that stops the statement at the
  time limit or on cancellation.
- PostgreSQL: a connection logged in as the query role (SELECT on the
  catalog's columns only, a member of no other role, see pgrole), never
  Django's login; a READ ONLY transaction, ``statement_timeout``,
  ``lock_timeout``, only the extended protocol (one statement per call), a
  server-side cursor to stream, and a backend cancel from another thread
  at the time limit or on cancellation.

Rows go to the caller in chunks as they are fetched.
"""

from __future__ import annotations

import threading

from queryengine import errors
from queryengine.compiler import CompiledQuery
from queryengine.errors import QueryError
from queryengine.execution import (
    CancelHandle,
    ChunkCallback,
    DatabaseTarget,
    EstimateCallback,
    ExecutionResult,
    ProgressCallback,
    Run,
)
from queryengine.postgres_run import EarlyConnection, connect_postgres, ensure_role, execute_postgres
from queryengine.sqlite_run import execute_sqlite, sqlite_authorizer

__all__ = [
    "CancelHandle",
    "DatabaseTarget",
    "EarlyConnection",
    "ExecutionResult",
    "connect_postgres",
    "ensure_role",
    "execute",
    "sqlite_authorizer",
]


def execute(
    query: CompiledQuery,
    target: DatabaseTarget,
    *,
    time_limit_ms: int,
    chunk_rows: int = 500,
    cancel: CancelHandle | None = None,
    on_estimate: EstimateCallback | None = None,
    on_chunk: ChunkCallback | None = None,
    on_progress: ProgressCallback | None = None,
    connection: EarlyConnection | None = None,
) -> ExecutionResult:
    """Run ``query`` to completion, streaming rows; raises QueryError with
    TIMEOUT, CANCELLED, VALIDATION_FAILED (the query's fault), UNAUTHORIZED
    (denied by the database) or INTERNAL. On PostgreSQL, ``connection`` is
    one already being opened for it."""
    run = Run(query, target, time_limit_ms, max(1, chunk_rows), cancel or CancelHandle())
    run.on_estimate, run.on_chunk, run.on_progress = on_estimate, on_chunk, on_progress
    run.check()
    if query.dialect != target.dialect:
        raise QueryError(errors.INTERNAL, "the query was compiled for another database")
    watchdog = threading.Timer(run.remaining_seconds(), run.time_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        if target.vendor == "sqlite":
            return execute_sqlite(run)
        if target.vendor == "postgresql":
            return execute_postgres(run, connection)
        raise QueryError(errors.INTERNAL, f"queries are not supported on {target.vendor}")
    finally:
        watchdog.cancel()

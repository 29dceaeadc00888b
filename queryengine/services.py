"""Running user queries: limits, history, compile, execute, callbacks.

``run_query`` is synchronous and blocks for the whole query: call it from a
worker thread, never from the thread that serves the ORM to the other
sockets. ``queryengine.outbox.run_query_async`` does that for an async
handler and accepts async callbacks. Limits and the database target come
from ``queryengine.config``.

One query, top to bottom: ``_compile`` (the compiler's QueryError is kept
to be recorded), ``_admit`` (recorded, or refused RATE_LIMITED), ``_execute``
(the executor streams rows through the callbacks), ``_complete`` (recorded
as completed, and charged, in one transaction). Every way it can end other
than completing raises QueryFailed with the query's id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts.interface import User
from queryengine import allowlist, errors
from queryengine.catalog import catalog
from queryengine.compiler import Caller, CompiledQuery, compile_query
from queryengine.config import Limits, database_target, limits_for
from queryengine.errors import QueryError, QueryFailed
from queryengine.executor import CancelHandle, DatabaseTarget, EarlyConnection, ExecutionResult, execute
from queryengine.models import QueryRecord
from realtime import lifecycle, processes

__all__ = [
    "QueryFailed",
    "QueryOutcome",
    "cancel_query",
    "database_target",
    "describe_catalog",
    "fail_records_of_dead_processes",
    "run_query",
]

log = logging.getLogger(__name__)

# A queued/running record older than its time limit plus this is a query
# whose process died: it no longer counts against the concurrency limit.
STALE_GRACE = timedelta(seconds=30)

StartedCallback = Callable[[str, int], None]
ProgressCallback = Callable[[int, float | None], None]
ChunkCallback = Callable[[list[list[Any]], list[dict[str, str]]], None]
CompletedCallback = Callable[[int, int, bool], None]
# Runs inside the transaction that records a query as completed (the
# request's charge is captured there: charged if and only if completed).
SettleCallback = Callable[[], None]

_STATUS_FOR_CODE = {
    errors.TIMEOUT: QueryRecord.Status.TIMEOUT,
    errors.CANCELLED: QueryRecord.Status.CANCELLED,
}
UNAVAILABLE_MESSAGE = "the database stopped answering; retry shortly"
INTERNAL_MESSAGE = "the server failed to run the query"


@dataclass(frozen=True)
class QueryOutcome:
    query_id: str
    total_rows: int
    truncated: bool
    duration_ms: int
    schema: list[dict[str, str]]


def describe_catalog() -> dict[str, Any]:
    """The tables user SQL may read, their columns and types."""
    return {"tables": catalog.describe(), "functions": allowlist.function_names()}


# ------------------------------------------------------------------- running

_running: dict[str, tuple[int, CancelHandle]] = {}
_running_lock = threading.Lock()
# A shutdown waits for the queries of this process to end (their tasks are
# cancelled at the drain deadline, which cancels them).
lifecycle.add_work(lifecycle.Work("queries", busy=lambda: len(_running)))


def cancel_query(query_id: str, *, user_pk: int) -> bool:
    """Cancel a query of this user running in this process; False if there
    is none (finished, unknown, someone else's, or in another process)."""
    with _running_lock:
        entry = _running.get(query_id)
    if entry is None or entry[0] != user_pk:
        return False
    entry[1].cancel()
    return True


def _admit(
    user_pk: int,
    application_id: str,
    sql: str,
    params: Any,
    compiled: CompiledQuery | None,
    error: QueryError | None,
    limits: Limits,
    reference: str,
) -> QueryRecord:
    """Record the query; refuse it (RATE_LIMITED) when the user already
    runs as many as the application allows. Serialised per user: a row lock
    on PostgreSQL, SQLite's one writer otherwise."""
    now = timezone.now()
    stale_before = now - timedelta(milliseconds=limits.time_limit_ms) - STALE_GRACE
    with transaction.atomic():
        if connection.vendor == "postgresql":
            User.objects.select_for_update().filter(pk=user_pk).first()
        active = QueryRecord.objects.filter(
            user_id=user_pk, application_id=application_id, status__in=QueryRecord.ACTIVE
        )
        active.filter(created_at__lt=stale_before).update(
            status=QueryRecord.Status.FAILED,
            error_code=errors.INTERNAL,
            error_message="abandoned: the server stopped while it ran",
            finished_at=now,
        )
        if error is None and active.count() >= limits.max_concurrent:
            raise QueryFailed(
                QueryError(
                    errors.RATE_LIMITED,
                    f"at most {limits.max_concurrent} queries may run at the same time",
                    retry_after=1,
                ),
                None,
            )
        return QueryRecord.objects.create(
            user_id=user_pk,
            application_id=application_id,
            sql=sql,
            compiled_sql=compiled.sql if compiled else "",
            params=params if isinstance(params, (list, dict)) else None,
            status=QueryRecord.Status.FAILED if error else QueryRecord.Status.QUEUED,
            error_code=error.code if error else "",
            error_message=error.message if error else "",
            finished_at=now if error else None,
            duration_ms=0 if error else None,
            reference=reference[:200],
            owner=processes.PROCESS_ID,
            created_at=now,
        )


def _finish(record_id: str, started: float, **fields: Any) -> int:
    """Record how a query ended. When the database does not answer, the
    write is retried until it does (``realtime.processes``), so the record
    never keeps its user's concurrency slot."""
    duration_ms = int((time.monotonic() - started) * 1000)
    changes = {"finished_at": timezone.now(), "duration_ms": duration_ms, **fields}

    def write() -> None:
        QueryRecord.objects.filter(pk=record_id, status__in=QueryRecord.ACTIVE).update(**changes)

    try:
        write()
    except Exception as exc:
        if not processes.is_database_error(exc):
            raise
        log.warning("query %s: its end could not be recorded yet (%s); retrying", record_id, type(exc).__name__)
        processes.retry_until_done(f"recording the end of query {record_id}", write)
    return duration_ms


@processes.on_dead("query records")
def fail_records_of_dead_processes(owners: processes.DeadOwners) -> int:
    """Fail the queued/running records of dead server processes, so that
    they stop counting against their users' concurrency limit."""
    return QueryRecord.objects.filter(owners.filter(), status__in=QueryRecord.ACTIVE).update(
        status=QueryRecord.Status.FAILED,
        error_code=errors.INTERNAL,
        error_message="abandoned: its server process stopped",
        finished_at=timezone.now(),
    )


def run_query(
    *,
    user_pk: int,
    application_id: str,
    sql: str,
    params: Any = None,
    cancel: CancelHandle | None = None,
    on_started: StartedCallback | None = None,
    on_progress: ProgressCallback | None = None,
    on_chunk: ChunkCallback | None = None,
    on_completed: CompletedCallback | None = None,
    reference: str = "",
    settle: SettleCallback | None = None,
) -> QueryOutcome:
    """Run one user query for (user, application), streaming through the
    callbacks, in protocol order (all on this thread, except that
    ``on_progress`` may come from a helper thread while the database
    driver blocks; it is never called concurrently with itself):
    ``on_started(query_id, estimated_ms)`` once (also before the error of a
    query the compiler refuses), ``on_progress(rows_processed, pct|None)``
    at most 5 times a second after 200 ms, ``on_chunk(rows, schema)`` per
    chunk, ``on_completed(duration_ms, total_rows, truncated)`` at the end.
    Raises QueryFailed (code, message, query_id) instead of completing.
    ``cancel`` (a CancelHandle) stops it from any thread; so does
    ``cancel_query(query_id, user_pk=...)``."""
    started = time.monotonic()
    cancel = cancel or CancelHandle()
    limits = limits_for(application_id)
    target = database_target()
    compiled, error = _compile(sql, params, Caller(user_pk, application_id), target, limits)
    # Connecting is mostly waiting for PostgreSQL to start a backend: do it
    # while the query is recorded.
    early = EarlyConnection(target) if compiled is not None and target.vendor == "postgresql" else None
    try:
        record = _admit(user_pk, application_id, sql, params, compiled, error, limits, reference)
    except BaseException:
        if early is not None:
            early.close()
        raise
    if error is not None or compiled is None:
        if on_started is not None:
            on_started(record.id, 0)
        raise QueryFailed(error or QueryError(errors.INTERNAL, "the query could not be compiled"), record.id)
    with _running_lock:
        _running[record.id] = (user_pk, cancel)
    try:
        result = _execute(
            record.id, compiled, target, limits, cancel, early, started, on_started, on_progress, on_chunk
        )
    finally:
        with _running_lock:
            _running.pop(record.id, None)
        if early is not None:
            early.close()
    duration_ms = _complete(record.id, result, started, settle)
    if on_completed is not None:
        on_completed(duration_ms, result.total_rows, result.truncated)
    return QueryOutcome(record.id, result.total_rows, result.truncated, duration_ms, result.schema)


def _compile(
    sql: str, params: Any, caller: Caller, target: DatabaseTarget, limits: Limits
) -> tuple[CompiledQuery | None, QueryError | None]:
    """The compiled query, or the compiler's refusal (recorded as such)."""
    try:
        compiled = compile_query(
            sql,
            params,
            catalog,
            caller,
            dialect="postgres" if target.dialect == "postgres" else "sqlite",
            max_rows=limits.max_rows,
            default_limit=limits.default_limit,
        )
    except QueryError as exc:
        return None, exc
    return compiled, None


def _execute(
    record_id: str,
    compiled: CompiledQuery,
    target: DatabaseTarget,
    limits: Limits,
    cancel: CancelHandle,
    early: EarlyConnection | None,
    started: float,
    on_started: StartedCallback | None,
    on_progress: ProgressCallback | None,
    on_chunk: ChunkCallback | None,
) -> ExecutionResult:
    """Execute a recorded query; any end but completion is recorded and
    raised as QueryFailed."""
    announced = False

    def estimated(estimated_ms: int) -> None:
        # The executor's estimate is when the query is announced and marked running.
        nonlocal announced
        announced = True
        if on_started is not None:
            on_started(record_id, estimated_ms)
        try:
            QueryRecord.objects.filter(pk=record_id).update(
                status=QueryRecord.Status.RUNNING, started_at=timezone.now(), estimated_ms=estimated_ms
            )
        except Exception as exc:  # cosmetic: the query runs on its own connection
            if not processes.is_database_error(exc):
                raise

    try:
        return execute(
            compiled,
            target,
            time_limit_ms=limits.time_limit_ms,
            chunk_rows=limits.chunk_rows,
            cancel=cancel,
            on_estimate=estimated,
            on_chunk=on_chunk,
            on_progress=on_progress,
            connection=early,
        )
    except QueryError as exc:
        if not announced and on_started is not None:
            on_started(record_id, 0)
        status = _STATUS_FOR_CODE.get(exc.code, QueryRecord.Status.FAILED)
        _finish(record_id, started, status=status, error_code=exc.code, error_message=exc.message[:2000])
        raise QueryFailed(exc, record_id) from None
    except Exception as exc:  # noqa: BLE001 - any other failure is recorded on the query's row first
        raise _failure(record_id, started, cancel, exc) from None


def _failure(record_id: str, started: float, cancel: CancelHandle, exc: Exception) -> QueryFailed:
    """Record and name an execution that broke other than by a QueryError."""
    if cancel.cancelled:
        # A callback failed because the caller went away and cancelled.
        _finish(record_id, started, status=QueryRecord.Status.CANCELLED, error_code=errors.CANCELLED)
        return QueryFailed(QueryError(errors.CANCELLED, "the query was cancelled"), record_id)
    if processes.is_database_error(exc):
        _finish(record_id, started, status=QueryRecord.Status.FAILED, error_code=errors.UNAVAILABLE)
        return QueryFailed(QueryError(errors.UNAVAILABLE, UNAVAILABLE_MESSAGE, retry_after=2), record_id)
    log.error("query %s failed unexpectedly", record_id, exc_info=exc)
    _finish(
        record_id,
        started,
        status=QueryRecord.Status.FAILED,
        error_code=errors.INTERNAL,
        error_message=INTERNAL_MESSAGE,
    )
    return QueryFailed(QueryError(errors.INTERNAL, INTERNAL_MESSAGE), record_id)


def _complete(record_id: str, result: ExecutionResult, started: float, settle: SettleCallback | None) -> int:
    """Record the query as completed, and settle its charge, in one
    transaction; returns its duration in ms."""
    try:
        with transaction.atomic():
            duration_ms = int((time.monotonic() - started) * 1000)
            QueryRecord.objects.filter(pk=record_id).update(
                status=QueryRecord.Status.COMPLETED,
                rows_returned=result.total_rows,
                truncated=result.truncated,
                finished_at=timezone.now(),
                duration_ms=duration_ms,
            )
            if settle is not None:
                settle()
    except Exception as exc:
        if not processes.is_database_error(exc):
            raise
        # The rows were sent, but the completion (and its charge) could not
        # be recorded: the query is not charged and ends UNAVAILABLE.
        _finish(record_id, started, status=QueryRecord.Status.FAILED, error_code=errors.UNAVAILABLE)
        raise QueryFailed(QueryError(errors.UNAVAILABLE, UNAVAILABLE_MESSAGE, retry_after=2), record_id) from None
    return duration_ms

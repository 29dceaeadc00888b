"""Running user queries: limits, history, compile, execute, callbacks.

``run_query`` is synchronous and blocks for the whole query: call it from a
worker thread, never from the thread that serves the ORM to the other
sockets (``database_sync_to_async``). ``run_query_async`` does that for an
async handler and accepts async callbacks.

Settings (read with defaults; per-application overrides in QueryLimits):
LEDGERCORE_QUERY_TIME_LIMIT_MS (10000), LEDGERCORE_QUERY_MAX_ROWS (10000),
LEDGERCORE_QUERY_MAX_CONCURRENT (2), LEDGERCORE_QUERY_DEFAULT_LIMIT (1000),
LEDGERCORE_QUERY_CHUNK_ROWS (500), LEDGERCORE_QUERY_PG_ROLE
("ledgercore_query"), LEDGERCORE_QUERY_PG_PASSWORD (""),
LEDGERCORE_QUERY_DATABASE_URL (""), LEDGERCORE_QUERY_ENSURE_ROLE (True).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, connection, connections, transaction
from django.utils import timezone
from psycopg.conninfo import conninfo_to_dict

from accounts.models import User
from queryengine import allowlist, errors, pgrole
from queryengine.catalog import catalog
from queryengine.compiler import Caller, CompiledQuery, compile_query
from queryengine.errors import ConnectionGone, QueryError
from queryengine.executor import CancelHandle, DatabaseTarget, EarlyConnection, ExecutionResult, execute
from queryengine.models import QueryLimits, QueryRecord
from realtime import lifecycle, processes

log = logging.getLogger(__name__)

# Progress events: not before the query has run this long, then at most
# once per interval (the protocol: at most 5 a second after 200 ms).
PROGRESS_AFTER_SECONDS = 0.2
PROGRESS_EVERY_SECONDS = 0.2
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


class QueryFailed(QueryError):
    """A query that did not complete; ``query_id`` is None when it was
    refused before being recorded (concurrency limit)."""

    def __init__(self, error: QueryError, query_id: str | None) -> None:
        super().__init__(error.code, error.message, retry_after=error.retry_after)
        self.line, self.column = error.line, error.column
        self.query_id = query_id


@dataclass(frozen=True)
class Limits:
    time_limit_ms: int
    max_rows: int
    max_concurrent: int
    default_limit: int
    chunk_rows: int


@dataclass(frozen=True)
class QueryOutcome:
    query_id: str
    total_rows: int
    truncated: bool
    duration_ms: int
    schema: list[dict[str, str]]


def _setting(name: str, default: int) -> int:
    value = getattr(settings, name, default)
    return max(1, int(value))


def default_limits() -> Limits:
    return Limits(
        time_limit_ms=_setting("LEDGERCORE_QUERY_TIME_LIMIT_MS", 10_000),
        max_rows=_setting("LEDGERCORE_QUERY_MAX_ROWS", 10_000),
        max_concurrent=_setting("LEDGERCORE_QUERY_MAX_CONCURRENT", 2),
        default_limit=_setting("LEDGERCORE_QUERY_DEFAULT_LIMIT", 1_000),
        chunk_rows=_setting("LEDGERCORE_QUERY_CHUNK_ROWS", 500),
    )


def limits_for(application_id: str) -> Limits:
    base = default_limits()
    override = QueryLimits.objects.filter(application_id=application_id).first()
    if override is None:
        return base
    return Limits(
        time_limit_ms=override.time_limit_ms or base.time_limit_ms,
        max_rows=override.max_rows or base.max_rows,
        max_concurrent=override.max_concurrent or base.max_concurrent,
        default_limit=override.default_limit or base.default_limit,
        chunk_rows=base.chunk_rows,
    )


def database_target() -> DatabaseTarget:
    """The default database, for the executor's own connections: on
    PostgreSQL the query role's login, and Django's for setting it up."""
    settings_dict = connections["default"].settings_dict
    vendor = connections["default"].vendor
    grants = catalog.reads()
    if vendor == "sqlite":
        return DatabaseTarget("sqlite", sqlite_path=str(settings_dict["NAME"]), grants=grants)
    if vendor == "postgresql":
        role = str(getattr(settings, "LEDGERCORE_QUERY_PG_ROLE", "ledgercore_query"))
        password = str(getattr(settings, "LEDGERCORE_QUERY_PG_PASSWORD", "") or "")
        url = str(getattr(settings, "LEDGERCORE_QUERY_DATABASE_URL", "") or "")
        admin: dict[str, Any] = {
            "dbname": settings_dict.get("NAME") or "",
            "user": settings_dict.get("USER") or None,
            "password": settings_dict.get("PASSWORD") or None,
            "host": settings_dict.get("HOST") or None,
            "port": settings_dict.get("PORT") or None,
            "application_name": "ledgercore-query-setup",
        }
        for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "passfile", "service"):
            if key in (settings_dict.get("OPTIONS") or {}):
                admin[key] = settings_dict["OPTIONS"][key]
        admin = {key: value for key, value in admin.items() if value is not None}
        if url:
            login = query_login_from_url(url, role)
        else:
            login = {**admin, "user": role, "application_name": "ledgercore-query"}
            login.pop("password", None)
        if password and not login.get("password"):
            login["password"] = password
        return DatabaseTarget(
            "postgresql",
            pg_params=login,
            pg_role=role,
            grants=grants,
            ensure_role=bool(getattr(settings, "LEDGERCORE_QUERY_ENSURE_ROLE", True)),
            admin_params=admin,
            pg_password=password,
        )
    raise QueryError(errors.INTERNAL, f"queries are not supported on {vendor}")


def query_login_from_url(url: str, role: str) -> dict[str, Any]:
    """Connection parameters from LEDGERCORE_QUERY_DATABASE_URL; its user,
    when it names one, must be the query role (the grants are the role's)."""
    name = "LEDGERCORE_QUERY_DATABASE_URL"
    if urllib.parse.urlsplit(url).scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured(f"{name}: expected a postgres:// URL")
    try:
        params: dict[str, Any] = dict(conninfo_to_dict(url))
    except Exception as exc:  # psycopg.ProgrammingError with libpq's reason
        raise ImproperlyConfigured(f"{name}: invalid URL ({str(exc).strip()})") from None
    user = params.setdefault("user", role)
    if user != role:
        raise ImproperlyConfigured(f"{name}: its user must be the query role {role!r} (LEDGERCORE_QUERY_PG_ROLE)")
    params.setdefault("application_name", "ledgercore-query")
    return params


def check_settings() -> None:
    """Fail at startup on a query login that cannot work."""
    url = str(getattr(settings, "LEDGERCORE_QUERY_DATABASE_URL", "") or "")
    role = str(getattr(settings, "LEDGERCORE_QUERY_PG_ROLE", "ledgercore_query"))
    try:
        pgrole.check_role_name(role)
    except ValueError as exc:
        raise ImproperlyConfigured(f"LEDGERCORE_QUERY_PG_ROLE: {exc}") from None
    if url:
        query_login_from_url(url, role)


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


class _ProgressGate:
    def __init__(self, callback: ProgressCallback | None, started: float) -> None:
        self.callback = callback
        self.started = started
        self.last = 0.0
        self.pct: float | None = None

    def __call__(self, rows: int, pct: float | None) -> None:
        now = time.monotonic()
        if self.callback is None or now - self.started < PROGRESS_AFTER_SECONDS:
            return
        if now - self.last < PROGRESS_EVERY_SECONDS:
            return
        self.last = now
        if pct is not None:
            pct = max(pct, self.pct or 0.0)
            self.pct = pct
        elif self.pct is not None:
            pct = self.pct
        self.callback(rows, pct)


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
    compiled: CompiledQuery | None = None
    error: QueryError | None = None
    try:
        compiled = compile_query(
            sql,
            params,
            catalog,
            Caller(user_pk, application_id),
            dialect="postgres" if target.dialect == "postgres" else "sqlite",
            max_rows=limits.max_rows,
            default_limit=limits.default_limit,
        )
    except QueryError as exc:
        error = exc
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
    announced = False

    def estimated(estimated_ms: int) -> None:
        nonlocal announced
        announced = True
        if on_started is not None:
            on_started(record.id, estimated_ms)
        try:
            QueryRecord.objects.filter(pk=record.id).update(
                status=QueryRecord.Status.RUNNING, started_at=timezone.now(), estimated_ms=estimated_ms
            )
        except Exception as exc:  # cosmetic: the query runs on its own connection
            if not processes.is_database_error(exc):
                raise

    try:
        result: ExecutionResult = execute(
            compiled,
            target,
            time_limit_ms=limits.time_limit_ms,
            chunk_rows=limits.chunk_rows,
            cancel=cancel,
            on_estimate=estimated,
            on_chunk=on_chunk,
            on_progress=_ProgressGate(on_progress, started),
            connection=early,
        )
    except QueryError as exc:
        if not announced and on_started is not None:
            on_started(record.id, 0)
        _finish(
            record.id,
            started,
            status=_STATUS_FOR_CODE.get(exc.code, QueryRecord.Status.FAILED),
            error_code=exc.code,
            error_message=exc.message[:2000],
        )
        raise QueryFailed(exc, record.id) from None
    except Exception as exc:
        if cancel.cancelled:
            # A callback failed because the caller went away and cancelled.
            _finish(record.id, started, status=QueryRecord.Status.CANCELLED, error_code=errors.CANCELLED)
            raise QueryFailed(QueryError(errors.CANCELLED, "the query was cancelled"), record.id) from None
        if processes.is_database_error(exc):
            unavailable = QueryError(errors.UNAVAILABLE, "the database stopped answering; retry shortly", retry_after=2)
            _finish(record.id, started, status=QueryRecord.Status.FAILED, error_code=errors.UNAVAILABLE)
            raise QueryFailed(unavailable, record.id) from None
        log.exception("query %s failed unexpectedly", record.id)
        _finish(
            record.id,
            started,
            status=QueryRecord.Status.FAILED,
            error_code=errors.INTERNAL,
            error_message="the server failed to run the query",
        )
        raise QueryFailed(QueryError(errors.INTERNAL, "the server failed to run the query"), record.id) from None
    finally:
        with _running_lock:
            _running.pop(record.id, None)
        if early is not None:
            early.close()

    try:
        with transaction.atomic():
            duration_ms = int((time.monotonic() - started) * 1000)
            QueryRecord.objects.filter(pk=record.id).update(
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
        _finish(record.id, started, status=QueryRecord.Status.FAILED, error_code=errors.UNAVAILABLE)
        raise QueryFailed(
            QueryError(errors.UNAVAILABLE, "the database stopped answering; retry shortly", retry_after=2), record.id
        ) from None
    if on_completed is not None:
        on_completed(duration_ms, result.total_rows, result.truncated)
    return QueryOutcome(record.id, result.total_rows, result.truncated, duration_ms, result.schema)


# ------------------------------------------------------------------- async

# Called on the worker thread; what it returns is awaited on the event loop.
# An ``async def`` fits (calling it runs none of its code); so does a plain
# function that prepares on the worker (e.g. encodes a frame) and returns
# the awaitable that sends it.
AsyncCallback = Callable[..., Awaitable[None]]
CALLBACK_TIMEOUT_SECONDS = 30.0
# Events of one query handed to the event loop and not yet sent: the worker
# fetches the next rows while the loop sends the previous ones, and a
# socket slower than the query still slows the query down.
EVENTS_IN_FLIGHT = 4
_EMPTY = object()


class _Outbox:
    """The events of one query, awaited in order by one task on the event
    loop. The worker thread waits only when EVENTS_IN_FLIGHT are queued,
    and wakes the loop only when that task sleeps: a wake-up is a write to
    the loop's pipe, and each costs the worker a wait for the GIL while the
    loop is busy."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: deque[Awaitable[None] | None] = deque()
        self.lock = threading.Lock()
        self.asleep = False
        self.wake = asyncio.Event()
        self.slots = threading.Semaphore(EVENTS_IN_FLIGHT)
        self.error: BaseException | None = None
        self.task = loop.create_task(self._send())

    async def _send(self) -> None:
        while True:
            with self.lock:
                item: Any = self.pending.popleft() if self.pending else _EMPTY
                self.asleep = item is _EMPTY
            if item is _EMPTY:
                await self.wake.wait()
                self.wake.clear()
                continue
            if item is None:
                return
            try:
                if self.error is None:
                    await item
                else:
                    _discard(item)
            except Exception as exc:  # handed to the worker at its next event
                self.error = exc
            finally:
                self.slots.release()

    def _put(self, item: Awaitable[None] | None) -> None:
        with self.lock:
            self.pending.append(item)
            wake, self.asleep = self.asleep, False
        if wake:
            self.loop.call_soon_threadsafe(self.wake.set)

    def bridge(self, callback: AsyncCallback | None) -> Callable[..., None] | None:
        if callback is None:
            return None

        def call(*args: Any) -> None:
            deadline = time.monotonic() + CALLBACK_TIMEOUT_SECONDS
            while not self.slots.acquire(timeout=0.05):
                if self.error is not None:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the query's events were not sent in time")
            if self.error is not None:
                raise self.error
            self._put(callback(*args))

        return call

    async def drain(self) -> None:
        """Send what is queued; then raise what a callback raised."""
        self._put(None)
        await self.task
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.error = self.error or ConnectionGone("the query's connection went away")
        self.task.cancel()
        with self.lock:
            left, self.pending = list(self.pending), deque()
        for item in left:
            _discard(item)


def _discard(item: Awaitable[None] | None) -> None:
    close = getattr(item, "close", None)
    if close is not None:
        close()  # a coroutine never awaited


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _in_worker(**kwargs: Any) -> QueryOutcome:
    # This thread's ORM connections, as Django treats a request's: kept for
    # the next query run by this (pooled) thread only within CONN_MAX_AGE
    # (0 by default: closed, and every query opens one).
    close_old_connections()
    try:
        return run_query(**kwargs)
    finally:
        close_old_connections()


async def run_query_async(
    *,
    user_pk: int,
    application_id: str,
    sql: str,
    params: Any = None,
    cancel: CancelHandle | None = None,
    on_started: AsyncCallback | None = None,
    on_progress: AsyncCallback | None = None,
    on_chunk: AsyncCallback | None = None,
    on_completed: AsyncCallback | None = None,
    reference: str = "",
    settle: SettleCallback | None = None,
) -> QueryOutcome:
    """``run_query`` in a worker thread with async callbacks (same order and
    arguments; the worker does not wait for each to finish, see _Outbox).
    Cancelling the awaiting task cancels the query."""
    loop = asyncio.get_running_loop()
    cancel = cancel or CancelHandle()
    outbox = _Outbox(loop)
    future = loop.run_in_executor(
        None,
        lambda: _in_worker(
            user_pk=user_pk,
            application_id=application_id,
            sql=sql,
            params=params,
            cancel=cancel,
            on_started=outbox.bridge(on_started),
            on_progress=outbox.bridge(on_progress),
            on_chunk=outbox.bridge(on_chunk),
            on_completed=outbox.bridge(on_completed),
            reference=reference,
            settle=settle,
        ),
    )
    try:
        outcome = await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.cancel()
        outbox.abort()
        # Nobody awaits the worker now: retrieve its outcome (the query's
        # cancellation) so it is not logged as an error never retrieved.
        future.add_done_callback(_retrieve)
        raise
    except QueryFailed:
        # The events before the failure go out before its query_error.
        try:
            await outbox.drain()
        except Exception:
            log.debug("sending the events of a failed query failed", exc_info=True)
        raise
    except BaseException:
        outbox.abort()
        raise
    await outbox.drain()
    return outcome

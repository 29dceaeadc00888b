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

import logging
import sqlite3
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from queryengine import allowlist, errors, pgrole, values
from queryengine.catalog import catalog
from queryengine.compiler import CompiledQuery
from queryengine.errors import QueryError

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1
# Fetches grow up to this many rows while each one answers within
# FAST_FETCH_SECONDS: a large PostgreSQL result then takes far fewer round
# trips than with fetches of one chunk (500 rows).
MAX_FETCH_ROWS = 8000
FAST_FETCH_SECONDS = 0.02
PROGRESS_SECONDS = 0.2
SQLITE_BATCH = 100
SQLITE_TICK_INSTRUCTIONS = 2000
SQLITE_ROWS_PER_MS = 2000
POSTGRES_COST_MS = 0.02
MAX_LOCK_TIMEOUT_MS = 2000
CANCEL_WAIT_SECONDS = 2.0

ChunkCallback = Callable[[list[list[Any]], list[dict[str, str]]], None]
ProgressCallback = Callable[[int, float | None], None]
EstimateCallback = Callable[[int], None]

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


@dataclass(frozen=True)
class DatabaseTarget:
    """Where queries run. ``grants`` are the catalog's real columns, which
    the PostgreSQL query role is given (and nothing else).

    On PostgreSQL, ``pg_params`` log in as the query role ``pg_role``;
    ``admin_params`` are Django's own login, used only to set the role up
    (``ensure_role``), giving it ``pg_password`` when that is not empty."""

    vendor: str
    sqlite_path: str = ""
    pg_params: Mapping[str, Any] = field(default_factory=dict)
    pg_role: str = "ledgercore_query"
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ensure_role: bool = True
    admin_params: Mapping[str, Any] = field(default_factory=dict)
    pg_password: str = field(default="", repr=False)

    @property
    def dialect(self) -> str:
        return "postgres" if self.vendor == "postgresql" else "sqlite"


class CancelHandle:
    """Stops a query from any thread: between chunks, and inside the
    database (SQLite interrupt, PostgreSQL backend cancel)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._interrupt: Callable[[], None] | None = None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        self.interrupt()

    def interrupt(self) -> None:
        with self._lock:
            hook = self._interrupt
        if hook is not None:
            try:
                hook()
            except Exception:  # the query may just have finished
                log.debug("interrupting a query failed", exc_info=True)

    def attach(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._interrupt = hook
        if self.cancelled:
            self.interrupt()

    def detach(self) -> None:
        with self._lock:
            self._interrupt = None


@dataclass(frozen=True)
class ExecutionResult:
    total_rows: int
    truncated: bool
    schema: list[dict[str, str]]
    estimated_ms: int


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
    run = _Run(query, target, time_limit_ms, max(1, chunk_rows), cancel or CancelHandle())
    run.on_estimate, run.on_chunk, run.on_progress = on_estimate, on_chunk, on_progress
    run.early = connection
    run.check()
    if query.dialect != target.dialect:
        raise QueryError(errors.INTERNAL, "the query was compiled for another database")
    watchdog = threading.Timer(run.remaining_seconds(), run.time_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        if target.vendor == "sqlite":
            return _execute_sqlite(run)
        if target.vendor == "postgresql":
            return _execute_postgres(run)
        raise QueryError(errors.INTERNAL, f"queries are not supported on {target.vendor}")
    finally:
        watchdog.cancel()


class _Run:
    """One execution: limits, cancellation, chunking and progress."""

    on_estimate: EstimateCallback | None
    on_chunk: ChunkCallback | None
    on_progress: ProgressCallback | None
    early: EarlyConnection | None = None

    def __init__(
        self, query: CompiledQuery, target: DatabaseTarget, time_limit_ms: int, chunk_rows: int, cancel: CancelHandle
    ) -> None:
        self.query = query
        self.target = target
        self.time_limit_ms = max(1, time_limit_ms)
        self.chunk_rows = chunk_rows
        self.cancel = cancel
        self.started = time.monotonic()
        self.deadline = self.started + self.time_limit_ms / 1000
        self.timed_out = False
        self.rows = 0
        self.estimated_ms = 0
        self.estimated_rows: int | None = None
        self.last_progress = 0.0
        self.last_pct: float | None = None
        self.progress_lock = threading.Lock()

    # -- limits ---------------------------------------------------------------

    def remaining_seconds(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def time_up(self) -> None:
        self.timed_out = True
        self.cancel.interrupt()

    def stopped(self) -> QueryError | None:
        if self.cancel.cancelled:
            return QueryError(errors.CANCELLED, "the query was cancelled")
        if self.timed_out or time.monotonic() >= self.deadline:
            self.timed_out = True
            return QueryError(errors.TIMEOUT, f"the query ran past its time limit of {self.time_limit_ms} ms")
        return None

    def check(self) -> None:
        stop = self.stopped()
        if stop is not None:
            raise stop

    def sqlite_tick(self) -> int:
        """SQLite progress handler: non-zero interrupts the statement."""
        try:
            if self.stopped() is not None:
                return 1
            self.progress()
        except errors.ConnectionGone:
            return 1
        except Exception:
            log.exception("query progress callback failed")
            return 1
        return 0

    # -- reporting ------------------------------------------------------------

    def estimated(self, estimated_ms: int, estimated_rows: int | None) -> None:
        self.estimated_ms = max(0, min(int(estimated_ms), self.time_limit_ms))
        self.estimated_rows = estimated_rows
        if self.on_estimate is not None:
            self.on_estimate(self.estimated_ms)

    def progress(self) -> None:
        now = time.monotonic()
        if self.on_progress is None or now - self.last_progress < PROGRESS_SECONDS:
            return
        with self.progress_lock:
            if now - self.last_progress < PROGRESS_SECONDS:
                return
            self.last_progress = now
            pct: float | None = None
            if self.estimated_rows:
                pct = min(99.0, round(self.rows * 100 / self.estimated_rows, 1))
                pct = max(pct, self.last_pct or 0.0)
                self.last_pct = pct
            self.on_progress(self.rows, pct)

    @contextmanager
    def ticking(self) -> Iterator[None]:
        """Report progress from a helper thread while this one is blocked in
        the driver (a PostgreSQL FETCH can take the whole time limit)."""
        done = threading.Event()

        def tick() -> None:
            while not done.wait(PROGRESS_SECONDS / 4):
                try:
                    self.progress()
                except errors.ConnectionGone:
                    return
                except Exception:
                    log.exception("query progress callback failed")
                    return

        ticker = threading.Thread(target=tick, name="query-progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()

    # -- streaming ------------------------------------------------------------

    def schema_for(self, description: Sequence[Any] | None) -> list[dict[str, str]]:
        names = [str(column[0]) for column in description or ()]
        compiled = self.query.schema
        if len(compiled) == len(names):
            return [dict(column) for column in compiled]
        return [{"name": name, "type": "unknown"} for name in names]

    def stream(self, cursor: Any, batch: int, *, fetch_ahead: bool = False) -> ExecutionResult:
        """Fetch and send every row, in chunks of ``chunk_rows``. Fetches
        start at ``batch`` rows and grow while the database answers at
        once (fewer round trips for a large result), and shrink again when
        it makes the rows wait (a slow query still sends what it has every
        FLUSH_SECONDS). With ``fetch_ahead`` a helper thread waits for the
        next fetch while this one converts and sends the last (PostgreSQL:
        the server produces rows meanwhile; the wait holds no GIL)."""
        schema = self.schema_for(cursor.description)
        convert: Callable[[Sequence[Sequence[Any]]], list[list[Any]]] | None = None
        buffer: list[Sequence[Any]] = []
        truncated = False
        last_flush = time.monotonic()
        smallest, largest = batch, max(batch, MAX_FETCH_ROWS)

        def flush(partial: bool) -> None:
            """Send full chunks, and the rest too when ``partial`` (rows
            waited long enough, or there are no more)."""
            nonlocal convert, buffer, last_flush
            if convert is None and buffer:
                _refine_types(schema, buffer)
                convert = values.rows_converter(schema)
            size = self.chunk_rows
            full = len(buffer) if partial else len(buffer) - len(buffer) % size
            for start in range(0, full, size):
                rows = convert(buffer[start : start + size]) if convert else []
                last_flush = time.monotonic()
                if self.on_chunk is not None:
                    self.on_chunk(rows, schema)
            del buffer[:full]

        def fetch(size: int) -> tuple[Sequence[Any], float]:
            asked = time.monotonic()
            return cursor.fetchmany(size), time.monotonic() - asked

        helper = ThreadPoolExecutor(1, thread_name_prefix="query-fetch") if fetch_ahead else None
        pending: Future[tuple[Sequence[Any], float]] | None = None
        try:
            while True:
                self.check()
                size = batch
                if pending is not None:
                    fetched, took = pending.result()
                    pending = None
                else:
                    fetched, took = fetch(size)
                if not fetched:
                    break
                room = self.query.max_rows - self.rows
                if len(fetched) > room:
                    fetched, truncated = fetched[:room], True
                buffer.extend(fetched)
                self.rows += len(fetched)
                if truncated:
                    break
                if took < FAST_FETCH_SECONDS and len(fetched) == size:
                    batch = min(batch * 2, largest)
                elif took > FLUSH_SECONDS:
                    batch = max(batch // 2, smallest)
                if helper is not None and len(fetched) == size:
                    pending = helper.submit(fetch, batch)
                flush(partial=time.monotonic() - last_flush >= FLUSH_SECONDS)
                self.progress()
            flush(partial=True)
        finally:
            if pending is not None:
                # The cursor must not be closed under a running fetch.
                wait([pending])
            if helper is not None:
                helper.shutdown()
        return ExecutionResult(self.rows, truncated, schema, self.estimated_ms)

    # -- errors ---------------------------------------------------------------

    def sanitize(self, message: str) -> str:
        text = message.strip().split("\n")[0][:300]
        for real in {*self.query.reads, *self.target.grants}:
            text = text.replace(real, "a catalog table")
        return text


def _refine_types(schema: list[dict[str, str]], rows: list[Sequence[Any]]) -> None:
    for index, column in enumerate(schema):
        if column["type"] != "unknown":
            continue
        sample = next((row[index] for row in rows if row[index] is not None), None)
        if sample is not None:
            column["type"] = values.guess_type(sample)


# ------------------------------------------------------------------- SQLite


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


def _execute_sqlite(run: _Run) -> ExecutionResult:
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


def _sqlite_error(run: _Run, exc: sqlite3.Error) -> QueryError:
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


# ------------------------------------------------------------------- PostgreSQL

_roles_ready: set[tuple[Any, ...]] = set()
_roles_lock = threading.Lock()
ENSURE_ATTEMPTS = 3


def ensure_role(target: DatabaseTarget) -> None:
    """Create/refresh the query role once per process and catalog, with
    Django's login when it may; otherwise leave it to ``setup_query_role``."""
    key = (
        tuple(sorted((k, str(v)) for k, v in target.admin_params.items() if k != "password")),
        target.pg_role,
        bool(target.pg_password),
        tuple(sorted((table, tuple(sorted(columns))) for table, columns in target.grants.items())),
    )
    with _roles_lock:
        if key in _roles_ready:
            return
        for attempt in range(1, ENSURE_ATTEMPTS + 1):
            try:
                with psycopg.connect(**target.admin_params, autocommit=True) as connection:
                    pgrole.setup_role(connection, target.pg_role, target.grants, password=target.pg_password or None)
                break
            except psycopg.errors.InsufficientPrivilege as exc:
                log.warning(
                    "could not set up the query role %r (%s); run manage.py setup_query_role as a privileged user",
                    target.pg_role,
                    str(exc).strip().split("\n")[0],
                )
                break
            except psycopg.Error as exc:
                # Roles are shared by every database of the server: another
                # process setting up the same role (for another database)
                # may have updated the same catalog row at the same moment.
                if attempt == ENSURE_ATTEMPTS:
                    log.warning("could not set up the query role %r: %s", target.pg_role, str(exc).strip()[:300])
                else:
                    time.sleep(0.05 * attempt)
        _roles_ready.add(key)


def connect_postgres(target: DatabaseTarget) -> Any:
    """A new connection logged in as the query role, checked to be exactly
    that role and no superuser (a misconfigured URL must not run user SQL
    with more rights), in a READ ONLY transaction not yet begun."""
    pgrole.check_role_name(target.pg_role)
    if target.ensure_role:
        ensure_role(target)
    try:
        connection = psycopg.connect(**target.pg_params, autocommit=False)
    except psycopg.OperationalError as exc:
        log.warning("could not connect to PostgreSQL for a query: %s", str(exc).strip().split("\n")[0])
        raise QueryError(errors.UNAVAILABLE, "the database does not answer; retry shortly", retry_after=2) from None
    except psycopg.Error as exc:
        log.error(
            "could not log in to PostgreSQL as the query role %r (%s): run manage.py setup_query_role",
            target.pg_role,
            str(exc).strip().split("\n")[0],
        )
        raise QueryError(errors.INTERNAL, "the database is not available for queries") from None
    try:
        connection.read_only = True
        row = connection.execute(
            "SELECT session_user, current_user, r.rolsuper OR r.rolbypassrls "
            "FROM pg_roles AS r WHERE r.rolname = session_user"
        ).fetchone()
    except psycopg.Error:
        connection.close()
        log.exception("could not check the query role's session")
        raise QueryError(errors.INTERNAL, "the database is not available for queries") from None
    if row is None or row[0] != target.pg_role or row[1] != target.pg_role or row[2]:
        connection.close()
        log.error(
            "queries must log in as the unprivileged role %r, not %r: check LEDGERCORE_QUERY_DATABASE_URL",
            target.pg_role,
            row[0] if row else None,
        )
        raise QueryError(errors.INTERNAL, "the query engine is not set up on this database")
    return connection


class EarlyConnection:
    """A query-role connection opened by a helper thread while the caller
    goes on (``connect_postgres``); ``take`` waits for it, ``close`` closes
    it unless it was taken."""

    def __init__(self, target: DatabaseTarget) -> None:
        self._connection: Any = None
        self._error: BaseException | None = None
        self._taken = False
        self._thread = threading.Thread(target=self._connect, args=(target,), name="query-connect", daemon=True)
        self._thread.start()

    def _connect(self, target: DatabaseTarget) -> None:
        try:
            self._connection = connect_postgres(target)
        except BaseException as exc:  # raised by take(), in the caller's thread
            self._error = exc

    def take(self) -> Any:
        self._thread.join()
        self._taken = True
        if self._error is not None:
            raise self._error
        return self._connection

    def close(self) -> None:
        self._thread.join()
        if not self._taken and self._connection is not None:
            self._connection.close()


def _execute_postgres(run: _Run) -> ExecutionResult:
    connection = run.early.take() if run.early is not None else connect_postgres(run.target)
    try:
        schema = pgrole.current_schema(connection)
        remaining_ms = max(1, int(run.remaining_seconds() * 1000))
        settings = {
            "search_path": sql.Identifier(schema).as_string(connection),
            "statement_timeout": str(remaining_ms),
            "lock_timeout": str(min(remaining_ms, MAX_LOCK_TIMEOUT_MS)),
            "idle_in_transaction_session_timeout": str(remaining_ms + 1000),
            "TimeZone": "UTC",
            # The compiler writes backslashes in strings as plain characters.
            "standard_conforming_strings": "on",
        }
        connection.execute(
            sql.SQL("SELECT {}").format(sql.SQL(", ").join([sql.SQL("set_config(%s, %s, true)")] * len(settings))),
            [item for pair in settings.items() for item in pair],
        )
        run.cancel.attach(lambda: connection.cancel_safe(timeout=CANCEL_WAIT_SECONDS))
        run.check()
        estimated_ms, estimated_rows = _postgres_estimate(connection, run.query)
        run.estimated(estimated_ms, estimated_rows)
        cursor = connection.cursor(name=f"lcq_{uuid.uuid4().hex}")
        with run.ticking():
            cursor.execute(run.query.sql, dict(run.query.params))
            return run.stream(cursor, run.chunk_rows, fetch_ahead=True)
    except psycopg.Error as exc:
        raise _postgres_error(run, exc) from None
    finally:
        run.cancel.detach()
        connection.close()


def _postgres_estimate(connection: Any, query: CompiledQuery) -> tuple[int, int | None]:
    try:
        with connection.transaction(), connection.cursor() as cursor:
            # Binary results force the extended protocol: without parameters
            # psycopg would send the text with the simple protocol, which
            # runs every statement in it.
            row = cursor.execute("EXPLAIN (FORMAT JSON) " + query.sql, dict(query.params), binary=True).fetchone()
    except psycopg.errors.QueryCanceled:
        raise
    except psycopg.Error:
        return 1, None
    try:
        plan = row[0][0]["Plan"]
        return 1 + int(float(plan["Total Cost"]) * POSTGRES_COST_MS), int(plan["Plan Rows"]) or None
    except (TypeError, KeyError, IndexError, ValueError):
        return 1, None


def _postgres_error(run: _Run, exc: Exception) -> QueryError:
    stop = run.stopped()
    if stop is not None:
        return stop
    if isinstance(exc, (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)):
        run.timed_out = True
        return QueryError(errors.TIMEOUT, f"the query ran past its time limit of {run.time_limit_ms} ms")
    if isinstance(exc, psycopg.errors.IdleInTransactionSessionTimeout):
        return QueryError(errors.TIMEOUT, "the query was idle past its time limit")
    state = getattr(exc, "sqlstate", None) or ""
    if state[:2] in ("08", "57") or (isinstance(exc, psycopg.OperationalError) and not state):
        # The connection broke or the server is shutting down or restarting.
        log.warning("a query lost the database (%s): %s", state or "no sqlstate", str(exc).strip()[:200])
        return QueryError(errors.UNAVAILABLE, "the database stopped answering; retry shortly", retry_after=2)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        log.warning("the query role was denied a compiled query: %s", run.query.sql[:500])
        return QueryError(errors.UNAUTHORIZED, "the query tried to read something outside the query catalog")
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        log.warning("a compiled query tried to write: %s", run.query.sql[:500])
        return QueryError(errors.UNAUTHORIZED, "queries cannot write")
    diag = getattr(exc, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc)) if diag else str(exc)
    # 22: data exceptions (division by zero, bad casts); 42: the query's
    # syntax or names; 54: program limits (too many columns, ...).
    if state[:2] in ("22", "42", "54"):
        return QueryError(errors.VALIDATION_FAILED, run.sanitize(message))
    log.error("query failed in PostgreSQL (%s): %s", state, message)
    return QueryError(errors.INTERNAL, "the database failed to run the query")

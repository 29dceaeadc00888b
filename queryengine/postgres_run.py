"""Running a compiled query on PostgreSQL: a connection logged in as the
query role (see ``pgrole``), never Django's login; a READ ONLY transaction,
``statement_timeout``, ``lock_timeout``, only the extended protocol, a
server-side cursor to stream, and a backend cancel from another thread at
the time limit or on cancellation."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from queryengine import errors, pgrole
from queryengine.compiler import CompiledQuery
from queryengine.errors import QueryError
from queryengine.execution import (
    CANCEL_WAIT_SECONDS,
    MAX_LOCK_TIMEOUT_MS,
    POSTGRES_COST_MS,
    DatabaseTarget,
    ExecutionResult,
    Run,
)

log = logging.getLogger(__name__)

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
        except BaseException as exc:  # noqa: BLE001 - raised by take(), in the caller's thread
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


def execute_postgres(run: Run, early: EarlyConnection | None = None) -> ExecutionResult:
    """Run it on ``early`` (a connection already being opened for it) or a new one."""
    connection = early.take() if early is not None else connect_postgres(run.target)
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


def _postgres_error(run: Run, exc: Exception) -> QueryError:
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

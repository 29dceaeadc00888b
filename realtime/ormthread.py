"""The ORM thread keeps its database connections between calls.

Every ``database_sync_to_async`` call of the consumers runs on one thread
(asgiref's single thread executor). With Django's ``CONN_MAX_AGE=0`` it
closes its connection after each call and opens a new one for the next:
on SQLite that is most of a connect's database time (a new connection
registers Django's SQL functions and runs the PRAGMAs), on PostgreSQL a
login per call. That thread lives as long as the process, so a connection
it keeps is never abandoned: here a connection it opens lives for
``LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS``. Django still closes it at the next
call when it is unusable or left outside autocommit, and with
``CONN_HEALTH_CHECKS`` checks it before reuse (PostgreSQL restarts).

That check is a ``SELECT 1`` round trip before every call, as many round
trips as the calls' own statements on a connect. On the ORM thread's
PostgreSQL connection it looks at the socket first: an idle session whose
socket has nothing to read (PostgreSQL ending a session, as a restart or
``pg_terminate_backend`` does, sends its error and closes the socket) is
used without the round trip; anything else (something to read, a session
not idle) gets Django's ``SELECT 1`` as before.

The threads that serve HTTP requests (``ledgercore.http``: a small set of
long-lived threads, one request at a time each) register with
``keep_this_thread`` and keep theirs the same way; they close them
(``close_this_thread``) before they end. Other threads keep Django's rule
(a connection per request or call), since a connection kept there would
outlive its thread.

Only in a server process started by ``ledgercore.serve`` (``manage.py
serve``, ``make run``), which calls ``enable()``: a test process shares the
thread with tests whose database is dropped at the end.
"""

from __future__ import annotations

import concurrent.futures
import logging
import select
import threading
import time
from typing import Any

from asgiref.sync import SyncToAsync
from django.conf import settings

log = logging.getLogger(__name__)

_orm_thread: threading.Thread | None = None
_enabled = False


def enable() -> None:
    """Keep the ORM thread's connections in this process."""
    global _enabled
    _enabled = True


def _remember() -> None:
    global _orm_thread
    _orm_thread = threading.current_thread()


def find_orm_thread() -> None:
    """Learn which thread is the ORM thread (called at ready()): a first
    task on asgiref's single thread executor, ahead of any hop."""
    SyncToAsync.single_thread_executor.submit(_remember)


def close_connections(timeout: float = 5.0) -> None:
    """Close the ORM thread's connections, on that thread (a server's last
    step): the database sees its sessions end before the process does."""
    from django.db import connections  # noqa: PLC0415 - only once the server ran

    if _orm_thread is None:
        return
    try:
        SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout)
    except concurrent.futures.TimeoutError:
        log.warning("the ORM thread is still busy: its database connections end with the process")


def on_orm_thread() -> bool:
    return _orm_thread is not None and threading.current_thread() is _orm_thread


_kept_threads: set[int] = set()


def keep_this_thread() -> None:
    """Connections this long-lived thread opens are kept as the ORM
    thread's are (in a server process)."""
    _kept_threads.add(threading.get_ident())


def close_this_thread() -> None:
    """Close this thread's connections and stop keeping them (its last
    call before it ends)."""
    from django.db import connections  # noqa: PLC0415 - only once the server ran

    _kept_threads.discard(threading.get_ident())
    connections.close_all()


def _keeps() -> bool:
    return on_orm_thread() or threading.get_ident() in _kept_threads


def keep_orm_connection(sender: object, connection: Any, **kwargs: object) -> None:
    """``connection_created``: a connection the ORM thread (or a kept
    thread) opens lives for LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS instead of
    CONN_MAX_AGE."""
    keep = settings.LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS
    if keep and _enabled and _keeps():
        connection.close_at = time.monotonic() + keep
        if connection.vendor == "postgresql" and not getattr(connection, "_quiet_check", False):
            _check_quiet_first(connection)


def _check_quiet_first(wrapper: Any) -> None:
    """The wrapper's health check (``is_usable``) passes at once while its
    session is idle and its socket has nothing to read; otherwise it runs
    Django's ``SELECT 1``."""
    full_check = wrapper.is_usable

    def is_usable() -> bool:
        raw = wrapper.connection
        if raw is not None and quiet(raw):
            return True
        return bool(full_check())

    wrapper.is_usable = is_usable
    wrapper._quiet_check = True


def quiet(raw: Any) -> bool:
    """Whether a psycopg connection is open, idle (not in a transaction) and
    has nothing waiting on its socket."""
    from psycopg import pq  # noqa: PLC0415 - PostgreSQL only

    try:
        if raw.closed or raw.info.transaction_status != pq.TransactionStatus.IDLE:
            return False
        readable, _, _ = select.select([raw.fileno()], [], [], 0)
    except Exception:  # noqa: BLE001 - any doubt: the full check decides
        return False
    return not readable

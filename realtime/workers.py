"""Long database work off the event loop: ``run_in_db_worker``.

A handler whose work may take seconds (a user query, a chat turn) must not
run it on the one thread that serves the ORM to the process's other sockets
(``database_sync_to_async``'s default). It runs on a pooled worker thread
instead, whose ORM connections are treated as Django treats a request's.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections


def _with_db_connections[T](fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    # This thread's ORM connections are kept for the next call on this
    # (pooled) thread only within CONN_MAX_AGE (0 by default: closed, and
    # every call opens its own).
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


def run_in_db_worker[T](fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Future[T]:
    """Start ``fn(*args, **kwargs)`` on the running loop's default executor.
    Returns the future rather than a coroutine: the caller decides what a
    cancellation of its task does to the work (usually shield the future and
    tell the work to stop)."""
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(None, functools.partial(_with_db_connections, fn, *args, **kwargs))

"""Who and what a log line is about: the connection's user, application and
sid, and the request's event and id, carried in a context variable and
added to every record by ``AddContext`` (a logging filter). The console
shows them in brackets; ``LOG_FORMAT=json`` writes one JSON object per line
with them as fields (python-json-logger).

A connection binds its user at connect; each request binds its event and
id while it is processed (tasks it starts inherit them). Only identifiers
are bound: never a token or a query string.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

FIELDS = ("user", "application", "sid", "event", "request_id")

_context: ContextVar[dict[str, Any] | None] = ContextVar("ledgercore_log_context", default=None)


def bind(**fields: Any) -> None:
    """Add ``fields`` to the current context (this task and what it starts)."""
    _context.set({**(_context.get() or {}), **fields})


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """``fields`` in the context for the ``with`` block only."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, Any]:
    return dict(_context.get() or {})


class AddContext(logging.Filter):
    """Sets each of ``FIELDS`` (and ``duration_ms``) on the record: the
    bound value, or ``-``; a value given with ``extra=`` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get() or {}
        for name in FIELDS:
            if not hasattr(record, name):
                value = context.get(name)
                setattr(record, name, "-" if value is None else value)
        if not hasattr(record, "duration_ms"):
            record.duration_ms = "-"
        bound = " ".join(
            f"{name}={getattr(record, name)}" for name in (*FIELDS, "duration_ms") if getattr(record, name) != "-"
        )
        record.context = f" [{bound}]" if bound else ""
        return True

"""Errors and their wire codes, in one place.

Raise a ``ProtocolError`` (or one of its subclasses) anywhere below a
handler; the consumer sends it as the error event of the request's category
with the standard envelope ``{code, message, retryAfter?}`` plus any
category ids (``envelope``). Anything else a handler raises is mapped here
too (``to_protocol_error``): a DRF ``ValidationError`` is
``VALIDATION_FAILED``, a database that does not answer is ``UNAVAILABLE``,
an app's own error type is mapped by the translation the app registers
(``translate``), and anything else is ``INTERNAL`` (a bug, logged by the
caller).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from django.db import InterfaceError, OperationalError
from rest_framework import serializers

# --- wire codes ----------------------------------------------------------------

RATE_LIMITED = "RATE_LIMITED"
UNAUTHORIZED = "UNAUTHORIZED"
NOT_FOUND = "NOT_FOUND"
INTERNAL = "INTERNAL"
VALIDATION_FAILED = "VALIDATION_FAILED"
TIMEOUT = "TIMEOUT"
CANCELLED = "CANCELLED"
UNAVAILABLE = "UNAVAILABLE"
# Every code an error event may carry (the ``code`` of its envelope).
WIRE_CODES = (RATE_LIMITED, UNAUTHORIZED, NOT_FOUND, INTERNAL, VALIDATION_FAILED, TIMEOUT, CANCELLED, UNAVAILABLE)
# Failures that are the server's fault: their charge is given back.
SERVER_FAILURES = frozenset({INTERNAL, TIMEOUT, UNAVAILABLE})
# The only failure that is charged: work the client started, then stopped.
# Every other one (a refusal: RATE_LIMITED, VALIDATION_FAILED, UNAUTHORIZED,
# NOT_FOUND, ...; or a server failure) releases the hold: what did not run
# is never charged.
CHARGED_FAILURES = frozenset({CANCELLED})

VALIDATION_EVENT = "validation_error"


class ProtocolError(Exception):
    """An error with its wire code. ``code`` is the class's unless given
    (errors whose code is decided at run time, such as a job's failure)."""

    code = INTERNAL

    def __init__(self, message: str, *, retry_after: int | None = None, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.extra = extra
        if code is not None:
            self.code = code

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            body["retryAfter"] = self.retry_after
        body.update(self.extra)
        return body


class Unauthorized(ProtocolError):
    code = UNAUTHORIZED


class NotFound(ProtocolError):
    code = NOT_FOUND


class RateLimited(ProtocolError):
    code = RATE_LIMITED


class Internal(ProtocolError):
    code = INTERNAL


class Timeout(ProtocolError):
    code = TIMEOUT


class Cancelled(ProtocolError):
    code = CANCELLED


class Unavailable(ProtocolError):
    """A backing service (Redis, PostgreSQL) does not answer, or the process
    is shutting down: the request was not run and not charged; retry after
    ``retryAfter`` seconds (on another process, after a shutdown)."""

    code = UNAVAILABLE

    def __init__(self, message: str, *, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)


class ValidationFailed(ProtocolError):
    """Sent as ``validation_error`` with per-field messages."""

    code = VALIDATION_FAILED

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


# --- mapping to the wire ------------------------------------------------------------


def is_database_error(exc: BaseException) -> bool:
    """The database did not answer (down, restarting, unreachable, timed
    out), as opposed to a bug or a business rule."""
    return isinstance(exc, OperationalError | InterfaceError | psycopg.OperationalError | psycopg.InterfaceError)


def database_unavailable() -> Unavailable:
    return Unavailable("the database does not answer; nothing was charged", retry_after=2)


_translations: dict[type[BaseException], Callable[[Any], ProtocolError]] = {}


def translate[E: BaseException](kind: type[E], to_wire: Callable[[E], ProtocolError]) -> None:
    """Map an app's own error type to the wire (registered at the app's
    ``AppConfig.ready()``): a handler may then let it propagate, e.g.
    ``translate(QueryError, lambda e: ProtocolError(e.message, code=e.code))``."""
    _translations[kind] = to_wire


def to_protocol_error(exc: BaseException, event: str) -> ProtocolError | None:
    """The wire error for what a handler of ``event`` raised; None for an
    unexpected failure (the caller logs it and answers ``unexpected()``)."""
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, serializers.ValidationError):
        return ValidationFailed(f"invalid {event} request", flatten_errors(exc.detail))
    if is_database_error(exc):
        return database_unavailable()
    for kind in type(exc).__mro__:
        to_wire = _translations.get(kind)
        if to_wire is not None:
            return to_wire(exc)
    return None


def unexpected() -> Internal:
    return Internal("the server failed to handle this request; nothing was charged")


def envelope(exc: ProtocolError, error_event: str, event_name: object) -> tuple[str, dict[str, Any]]:
    """The event and data that carry ``exc`` for a request of ``event_name``
    whose category reports errors as ``error_event``."""
    data = exc.payload()
    if isinstance(exc, ValidationFailed):
        data["errors"] = exc.errors
        data["event"] = event_name if isinstance(event_name, str) else None
        return VALIDATION_EVENT, data
    return error_event, data


def flatten_errors(detail: Any, path: str = "") -> dict[str, list[str]]:
    """DRF error detail -> {"field" or "field.sub" or "list.0.field": [messages]}."""
    out: dict[str, list[str]] = {}

    def merge(more: dict[str, list[str]]) -> None:
        for key, messages in more.items():
            out.setdefault(key, []).extend(messages)

    if isinstance(detail, dict):
        for key, value in detail.items():
            sub = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            merge(flatten_errors(value, sub))
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)):
                merge(flatten_errors(value, f"{path}.{index}" if path else str(index)))
            else:
                merge({path or "data": [str(value)]})
    else:
        merge({path or "data": [str(detail)]})
    return out

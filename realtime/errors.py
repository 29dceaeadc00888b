"""Errors that carry their wire code.

Raise one of these anywhere below a handler; the consumer turns it into the
error event of the request's category with the standard envelope
``{code, message, retryAfter?}`` plus any category ids.
"""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, *, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            body["retryAfter"] = self.retry_after
        body.update(self.extra)
        return body


class Unauthorized(ProtocolError):
    code = "UNAUTHORIZED"


class NotFound(ProtocolError):
    code = "NOT_FOUND"


class RateLimited(ProtocolError):
    code = "RATE_LIMITED"


class Internal(ProtocolError):
    code = "INTERNAL"


class Timeout(ProtocolError):
    code = "TIMEOUT"


class Cancelled(ProtocolError):
    code = "CANCELLED"


class Unavailable(ProtocolError):
    """A backing service (Redis, PostgreSQL) does not answer, or the process
    is shutting down: the request was not run and not charged; retry after
    ``retryAfter`` seconds (on another process, after a shutdown)."""

    code = "UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)


class ValidationFailed(ProtocolError):
    """Sent as ``validation_error`` with per-field messages."""

    code = "VALIDATION_FAILED"

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}

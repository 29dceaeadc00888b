"""Wire errors as exceptions: each carries the wire ``code`` (and ``retryAfter``)."""

from __future__ import annotations

from typing import Any

# Events that end a request with an error; all carry {code, message, ...}
# except insufficient_credits ({required, available, action}).
ERROR_EVENTS = frozenset(
    {
        "error",
        "validation_error",
        "rate_limit_error",
        "insufficient_credits",
        "query_error",
        "chat_error",
        "address_analysis_error",
        "market_data_error",
    }
)


class LedgerCoreError(Exception):
    """An error the server sent: ``code`` is the wire code (``NOT_FOUND``,
    ``VALIDATION_FAILED``, ``RATE_LIMITED``, ``UNAVAILABLE``...), ``event``
    the error event's name and ``data`` its whole payload."""

    def __init__(
        self, code: str, message: str, *, event: str = "error", retry_after: float | None = None, data: Any = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.event = event
        self.retry_after = retry_after
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}


class ValidationFailed(LedgerCoreError):
    """``VALIDATION_FAILED``; ``errors`` maps fields to messages."""

    @property
    def errors(self) -> dict[str, list[str]]:
        errors = self.data.get("errors")
        return errors if isinstance(errors, dict) else {}


class RateLimited(LedgerCoreError):
    """``RATE_LIMITED``: retry after ``retry_after`` seconds."""


class InsufficientCredits(LedgerCoreError):
    """The request was refused for want of credits (``required``, ``available``)."""


class Unauthorized(LedgerCoreError):
    """``UNAUTHORIZED``: a bad token at connect (close 4401), or a forbidden room or resource."""


class NotFound(LedgerCoreError):
    """``NOT_FOUND``: an unknown event, symbol, chain or conversation."""


class Unavailable(LedgerCoreError):
    """``UNAVAILABLE``: a backing service did not answer or the server is draining; retry after ``retry_after``."""


class ConnectionLost(LedgerCoreError):
    """The connection closed while a request was in flight (``code`` ``CONNECTION_LOST``)."""


_BY_CODE: dict[str, type[LedgerCoreError]] = {
    "VALIDATION_FAILED": ValidationFailed,
    "RATE_LIMITED": RateLimited,
    "UNAUTHORIZED": Unauthorized,
    "NOT_FOUND": NotFound,
    "UNAVAILABLE": Unavailable,
    "INSUFFICIENT_CREDITS": InsufficientCredits,
}


def error_from_frame(event: str, data: Any) -> LedgerCoreError:
    """The exception for an error frame."""
    payload = data if isinstance(data, dict) else {}
    if event == "insufficient_credits":
        message = f"{payload.get('required')} credits required, {payload.get('available')} available"
        return InsufficientCredits("INSUFFICIENT_CREDITS", message, event=event, data=payload)
    code = str(payload.get("code") or "INTERNAL")
    retry = payload.get("retryAfter")
    cls = _BY_CODE.get(code, LedgerCoreError)
    return cls(
        code,
        str(payload.get("message") or code),
        event=event,
        retry_after=float(retry) if isinstance(retry, int | float) else None,
        data=payload,
    )

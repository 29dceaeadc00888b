"""The query engine's one error type, carrying its wire code.

Plain Python (no Django): the compiler and the executor raise it, the
services record it, and the WebSocket handler turns it into ``query_error
{queryId, code, message}``.
"""

from __future__ import annotations

VALIDATION_FAILED = "VALIDATION_FAILED"
UNAUTHORIZED = "UNAUTHORIZED"
RATE_LIMITED = "RATE_LIMITED"
TIMEOUT = "TIMEOUT"
CANCELLED = "CANCELLED"
INTERNAL = "INTERNAL"
NOT_FOUND = "NOT_FOUND"
# The database did not answer (stopped, restarting, unreachable): nothing ran.
UNAVAILABLE = "UNAVAILABLE"


class QueryError(Exception):
    """A query the engine refuses or could not finish.

    ``code`` is the wire code; ``message`` is safe to show the caller (no
    internal table names); ``line``/``column`` point into the caller's SQL
    when the parser knows where the problem is.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        if line is not None and column is not None:
            message = f"{message} (line {line}, column {column})"
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"QueryError({self.code!r}, {self.message!r})"


def invalid(message: str, *, line: int | None = None, column: int | None = None) -> QueryError:
    return QueryError(VALIDATION_FAILED, message, line=line, column=column)


def forbidden(message: str, *, line: int | None = None, column: int | None = None) -> QueryError:
    return QueryError(UNAUTHORIZED, message, line=line, column=column)


class ConnectionGone(RuntimeError):
    """The caller's connection went away: nobody sends the query's events.

    Raised by a progress or row callback; the executor stops reporting and
    lets the query end on its cancellation, without logging a fault.
    """

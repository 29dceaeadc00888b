"""The query engine's errors, one per meaning. Plain Python (no Django).

- ``QueryError``: why the engine refuses a query or could not finish it,
  with its wire code. The compiler and the executor raise it.
- ``QueryFailed``: a ``QueryError`` for one query the services handled,
  with the id of its record. ``services.run_query`` raises only this; the
  WebSocket handler turns it into ``query_error {queryId, code, message}``
  (the one place query errors get their wire form).
- ``ConnectionGone``: nobody listens to a query's events any more. Never on
  the wire: the query ends on its cancellation.
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


class QueryFailed(QueryError):
    """A query that did not complete; ``query_id`` is None when it was
    refused before being recorded (concurrency limit)."""

    def __init__(self, error: QueryError, query_id: str | None) -> None:
        super().__init__(error.code, error.message, retry_after=error.retry_after)
        self.line, self.column = error.line, error.column
        self.query_id = query_id


def invalid(message: str, *, line: int | None = None, column: int | None = None) -> QueryError:
    return QueryError(VALIDATION_FAILED, message, line=line, column=column)


def forbidden(message: str, *, line: int | None = None, column: int | None = None) -> QueryError:
    return QueryError(UNAUTHORIZED, message, line=line, column=column)


class ConnectionGone(RuntimeError):
    """The caller's connection went away: nobody sends the query's events.

    Raised by a progress or row callback; the executor stops reporting and
    lets the query end on its cancellation, without logging a fault.
    """

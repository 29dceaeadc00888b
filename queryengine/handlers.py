"""Query engine events: ``query`` → ``query_started`` → ``query_progress``… →
``query_response`` chunks → ``query_completed`` (or ``query_error``);
``query_cancel``; ``query_catalog``.

The path of a ``query``: this handler -> ``outbox.run_query_async`` (a
database worker thread; the events come back to the loop in order) ->
``services.run_query`` (compile, record, execute, complete) ->
``executor.execute`` (the rows, through the callbacks below). A query runs
on its own database connection, never on the thread that serves the ORM to
the process's other sockets; closing the socket cancels it. Every way a
query ends other than completing is a ``QueryFailed``, sent as
``query_error`` by ``QueryFailure``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

from channels.db import database_sync_to_async

from queryengine import errors as query_errors
from queryengine import metrics, services, values
from queryengine.errors import QueryError, QueryFailed
from queryengine.executor import CancelHandle
from queryengine.outbox import run_query_async
from queryengine.payloads import (
    QueryCancelPayload,
    QueryCatalogResponsePayload,
    QueryCompletedPayload,
    QueryErrorPayload,
    QueryPayload,
    QueryProgressPayload,
    QueryResponsePayload,
    QueryStartedPayload,
)
from realtime import protocol, transport
from realtime.context import RequestContext
from realtime.errors import ProtocolError
from realtime.payloads import Payload
from realtime.registry import registry

CATEGORY = "Query engine"


class QueryFailure(ProtocolError):
    """A ``QueryFailed`` on the wire: its own code, with the query id."""

    def __init__(self, failure: QueryFailed) -> None:
        extra: dict[str, Any] = {"queryId": failure.query_id}
        if failure.line is not None:
            extra["line"] = failure.line
        if failure.column is not None:
            extra["column"] = failure.column
        super().__init__(failure.message, retry_after=failure.retry_after, **extra)
        self.code = failure.code


@registry.on(
    "query",
    QueryPayload,
    summary="Run one read-only SELECT over the catalog; rows stream in chunks.",
    replies=("query_started", "query_progress", "query_response", "query_completed", "query_error"),
    throttle="expensive",
    price="query",
    error_event="query_error",
    concurrent=True,
    category=CATEGORY,
)
async def query(ctx: RequestContext, data: dict[str, Any]) -> None:
    query_id = ""

    # started and chunk run on the query's worker thread and return what the
    # event loop awaits: the id is known before the first chunk is built, and
    # rows are encoded there, so the loop shared by every socket of the
    # process only writes the frames.
    def started(qid: str, estimated_ms: int) -> Awaitable[None]:
        nonlocal query_id
        query_id = qid
        return ctx.send("query_started", {"queryId": qid, "estimatedMs": estimated_ms})

    async def progress(rows: int, pct: float | None) -> None:
        await ctx.send(
            "query_progress",
            {"queryId": query_id, "rowsProcessed": rows, "pct": None if pct is None else round(pct, 1)},
        )

    direct = ctx.connection.writes_frames()

    def chunk(rows: list[list[Any]], schema: list[dict[str, str]]) -> Awaitable[None]:
        data = {"queryId": query_id, "rows": rows, "schema": schema}
        text = protocol.encode("query_response", data, ctx.request_id, plain=isinstance(rows, values.PlainRows))
        frame = transport.SharedFrame(text)
        if direct:
            frame.prepared()  # framed here, on the worker, rather than on the loop
        # The consumer (channels is untyped) returns its send coroutine.
        return cast(Awaitable[None], ctx.connection.send_paced(frame))

    async def completed(duration_ms: int, total_rows: int, truncated: bool) -> None:
        metrics.QUERY_SECONDS.observe(duration_ms / 1000)
        metrics.QUERY_ROWS.observe(total_rows)
        await ctx.send(
            "query_completed",
            {"queryId": query_id, "durationMs": duration_ms, "totalRows": total_rows, "truncated": truncated},
        )

    try:
        await run_query_async(
            user_pk=ctx.user_pk,
            application_id=ctx.application_id,
            sql=data["sql"],
            params=data.get("params"),
            cancel=CancelHandle(),
            on_started=started,
            on_progress=progress,
            on_chunk=chunk,
            on_completed=completed,
            reference=f"{ctx.sid}:{ctx.request_id}" if ctx.request_id is not None else ctx.sid,
            # Charged in the transaction that records the query as completed.
            settle=ctx.charge.capture_in_transaction if ctx.charge is not None else None,
        )
    except QueryFailed as failure:
        raise QueryFailure(failure) from None


@registry.on(
    "query_cancel",
    QueryCancelPayload,
    summary="Stop a running query of yours; it ends with query_error CANCELLED.",
    replies=("query_error",),
    error_event="query_error",
    category=CATEGORY,
)
async def query_cancel(ctx: RequestContext, data: dict[str, Any]) -> None:
    query_id = data["queryId"]
    if not services.cancel_query(query_id, user_pk=ctx.user_pk):
        not_running = QueryError(query_errors.NOT_FOUND, "no query of yours with that id is running here")
        raise QueryFailure(QueryFailed(not_running, query_id))


@registry.on(
    "query_catalog",
    Payload,
    summary="The tables and columns user SQL may read, and the allowed functions.",
    replies=("query_catalog_response",),
    category=CATEGORY,
)
async def query_catalog(ctx: RequestContext, data: dict[str, Any]) -> None:
    await ctx.send("query_catalog_response", await database_sync_to_async(services.describe_catalog)())


for _name, _payload, _summary in [
    ("query_started", QueryStartedPayload, "The query was accepted (or is about to be refused); its id."),
    ("query_progress", QueryProgressPayload, "Rows processed so far; at most 5 a second after 200 ms."),
    ("query_response", QueryResponsePayload, "A chunk of result rows, in order."),
    ("query_completed", QueryCompletedPayload, "The query finished; total rows and whether they were cut."),
    ("query_error", QueryErrorPayload, "The query failed, was refused, cancelled or timed out."),
    ("query_catalog_response", QueryCatalogResponsePayload, "The catalog of tables user SQL may read."),
]:
    registry.outbound(_name, _payload, summary=_summary, category=CATEGORY)

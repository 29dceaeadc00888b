"""``POST /api/query/run``: one query over HTTP, rows streamed as NDJSON
(default) or CSV (``Accept: text/csv`` or ``?format=csv``).

The same path as the WebSocket ``query`` event: ``services.run_query``
compiles, validates, records and executes it; its price ("query") is held
before it runs, captured in the transaction that records it as completed,
and released when it fails or the client goes away (the hold belongs to
this process: if the process dies, the others release it).

The query runs on a thread of its own; rows reach the response through a
small queue, so a slow client slows the query down. The status is decided
by the first thing the query produces: rows or completion give 200, a
failure before any row gives its error (400, 402, 403, 429, 503, 504...).

NDJSON body: a header line ``{"queryId", "schema"}``, one JSON array per
row, then ``{"completed": {totalRows, truncated, durationMs}}``, or
``{"error": {code, message}}`` if the query failed after rows were sent.
CSV body: a header row of column names, then the rows; a query failing
after rows were sent ends the response abruptly (no terminating chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import queue
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from django.db import connections
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import renderers, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from credits.interface import Actor, InsufficientCredits, InvalidMovement, capture_hold, hold_credits, price_of
from credits.interface import release_hold as _release_hold
from queryengine import errors
from queryengine.errors import ConnectionGone, QueryError, QueryFailed
from queryengine.executor import CancelHandle
from queryengine.payloads import QueryPayload
from queryengine.services import UNAVAILABLE_MESSAGE, run_query
from realtime import processes
from realtime.rest import bound_application

PRICE_KEY = "query"
QUEUE_ITEMS = 8
# How long the response waits on the queue at a time (see _Body._next).
QUEUE_WAIT_SECONDS = 0.5
FIRST_RESULT_TIMEOUT_SECONDS = 600.0
# A client that reads nothing for this long is abandoned and its query cancelled.
STALLED_CLIENT_SECONDS = 60.0
HTTP_STATUS = {
    errors.VALIDATION_FAILED: 400,
    errors.UNAUTHORIZED: 403,
    errors.NOT_FOUND: 404,
    errors.RATE_LIMITED: 429,
    errors.INTERNAL: 500,
    errors.UNAVAILABLE: 503,
    errors.TIMEOUT: 504,
    errors.CANCELLED: 409,
}


class NDJSONRenderer(renderers.BaseRenderer):
    """Lets content negotiation pick NDJSON; success bodies are streamed by
    the view, error bodies are one JSON object."""

    media_type = "application/x-ndjson"
    format = "ndjson"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> Any:
        return b"" if data is None else json.dumps(data).encode()


class CSVRenderer(NDJSONRenderer):
    media_type = "text/csv"
    format = "csv"


class QueryFailure(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    queryId = serializers.CharField(required=False, allow_null=True)  # noqa: N815 - the wire's field name
    errors = serializers.DictField(required=False)
    required = serializers.IntegerField(required=False, help_text="Price of a query (402).")
    available = serializers.IntegerField(required=False, help_text="Balance (402).")


class _Run:
    """One query on its own thread, its results handed over a queue."""

    def __init__(self, user: Any, application_id: str, sql: str, params: Any, reference: str) -> None:
        self.user, self.application_id = user, application_id
        self.sql, self.params, self.reference = sql, params, reference
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue(QUEUE_ITEMS)
        self.cancel = CancelHandle()
        self.hold_id: int | None = None
        self.price = 0
        self.query_id: str | None = None

    def reserve(self) -> None:
        """Hold the price (raises InsufficientCredits)."""
        price = self.price = price_of(self.application_id, PRICE_KEY)
        if price > 0:
            hold = hold_credits(
                self.user.pk,
                self.application_id,
                price,
                action=PRICE_KEY,
                actor=Actor.user(self.user.username),
                reference=self.reference,
                owner=processes.PROCESS_ID,
            )
            self.hold_id = hold.pk

    def start(self) -> None:
        threading.Thread(target=self._run, name="http-query", daemon=True).start()

    def _put(self, item: tuple[str, Any]) -> None:
        """Hand an item to the response; raises ConnectionGone (the query is
        then cancelled) when the client went away or read nothing for
        STALLED_CLIENT_SECONDS."""
        deadline = time.monotonic() + STALLED_CLIENT_SECONDS
        while True:
            if self.cancel.cancelled:
                raise ConnectionGone("the client went away")
            if time.monotonic() > deadline:
                self.cancel.cancel()
                raise ConnectionGone("the client stopped reading")
            try:
                self.items.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _capture(self) -> None:
        if self.hold_id is not None:
            # Released elsewhere (expiry, a dead process): the completed query is not charged.
            with contextlib.suppress(InvalidMovement):
                capture_hold(self.hold_id, self.price, actor=Actor.system())

    def _release(self) -> None:
        if self.hold_id is not None:
            with contextlib.suppress(InvalidMovement):  # already settled
                _release_hold(self.hold_id, actor=Actor.system(), reason="not run or failed: refunded")

    def _run(self) -> None:
        def started(query_id: str, estimated_ms: int) -> None:
            self.query_id = query_id

        try:
            outcome = run_query(
                user_pk=self.user.pk,
                application_id=self.application_id,
                sql=self.sql,
                params=self.params,
                cancel=self.cancel,
                on_started=started,
                on_chunk=lambda rows, schema: self._put(("rows", (rows, schema))),
                reference=self.reference,
                settle=self._capture,
            )
        except QueryFailed as failure:
            self._release()
            self._end(("error", failure))
        except BaseException as exc:
            self._release()
            self._end(("error", QueryFailed(QueryError(errors.INTERNAL, "the server failed to run the query"), None)))
            if not isinstance(exc, Exception):
                raise
        else:
            self._end(("done", outcome))
        finally:
            connections.close_all()  # this thread's ORM connection: the thread ends here

    def _end(self, item: tuple[str, Any]) -> None:
        with contextlib.suppress(ConnectionGone):  # nobody reads any more
            self._put(item)


def _failure_body(failure: QueryFailed) -> dict[str, Any]:
    body: dict[str, Any] = {"code": failure.code, "message": failure.message, "queryId": failure.query_id}
    return body


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


class _Body:
    """The streamed body: the first item (already taken), then the rest."""

    def __init__(self, run: _Run, first: tuple[str, Any], as_csv: bool) -> None:
        self.run, self.first, self.as_csv = run, first, as_csv

    def _header(self, schema: list[dict[str, str]]) -> str:
        if self.as_csv:
            return _csv_line([column["name"] for column in schema])
        return json.dumps({"queryId": self.run.query_id, "schema": schema}) + "\n"

    def _rows(self, rows: list[list[Any]]) -> str:
        if self.as_csv:
            return "".join(_csv_line([_cell(value) for value in row]) for row in rows)
        return "".join(json.dumps(row, default=str) + "\n" for row in rows)

    async def __aiter__(self) -> AsyncIterator[str]:
        item, header_sent = self.first, False
        try:
            while True:
                kind, value = item
                if kind == "rows":
                    rows, schema = value
                    if not header_sent:
                        header_sent = True
                        yield self._header(schema)
                    if rows:
                        yield self._rows(rows)
                elif kind == "done":
                    if not header_sent:
                        yield self._header(value.schema)
                    if not self.as_csv:
                        summary = {
                            "totalRows": value.total_rows,
                            "truncated": value.truncated,
                            "durationMs": value.duration_ms,
                        }
                        yield json.dumps({"completed": summary}) + "\n"
                    return
                else:
                    if self.as_csv:
                        raise RuntimeError(f"query {value.query_id} failed after rows were sent: {value.code}")
                    yield json.dumps({"error": _failure_body(value)}) + "\n"
                    return
                item = await self._next()
        finally:
            self.run.cancel.cancel()

    async def _next(self) -> tuple[str, Any]:
        """The next item, waited for in short slices: a worker thread
        blocked in the queue for good would outlive a response whose client
        went away (the query then ends without handing anything over)."""
        while True:
            try:
                return await asyncio.to_thread(self.run.items.get, True, QUEUE_WAIT_SECONDS)
            except queue.Empty:
                continue


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


def _insufficient(exc: InsufficientCredits) -> Response:
    body = {
        "code": "INSUFFICIENT_CREDITS",
        "message": f"{PRICE_KEY} needs {exc.required} credits; {exc.available} available",
        "required": exc.required,
        "available": exc.available,
    }
    return Response(body, 402)


class QueryRunRequest(QueryPayload):
    """``applicationId`` is not taken here: pass ``?applicationId=`` with a token."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields.pop("applicationId", None)


class QueryRunView(APIView):
    """Run one read-only SELECT over the catalog (see /api/query/catalog/);
    charged the price of a query, refunded if it fails."""

    api_key_scope = "query:run"
    renderer_classes = [NDJSONRenderer, CSVRenderer, renderers.JSONRenderer]

    @extend_schema(
        request=QueryRunRequest,
        parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=["ndjson", "csv"], description="Body format.")],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="Header, rows, summary."),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="Header row, then the rows."),
            **{
                (code, media): OpenApiResponse(QueryFailure)
                for code in (400, 402, 403, 404, 409, 429, 500, 503, 504)
                for media in ("application/json", "application/x-ndjson", "text/csv")
            },
        },
    )
    def post(self, request: Request) -> Any:
        body = QueryRunRequest(data=request.data)
        if not body.is_valid():
            return Response({"code": "VALIDATION_FAILED", "message": "invalid query", "errors": body.errors}, 400)
        application_id = bound_application(request)
        if application_id is None:
            return Response({"code": "UNAUTHORIZED", "message": "no application to run the query in"}, 403)
        reference = f"http:{request.META.get('HTTP_X_REQUEST_ID', '')[:64]}"
        run = _Run(
            request.user, application_id, body.validated_data["sql"], body.validated_data.get("params"), reference
        )
        try:
            run.reserve()
        except Exception as exc:
            if isinstance(exc, InsufficientCredits):
                return _insufficient(exc)
            if not processes.is_database_error(exc):
                raise
            # Nothing was held: the query is refused, not charged.
            refusal = {"code": errors.UNAVAILABLE, "message": UNAVAILABLE_MESSAGE}
            return Response(refusal, 503, headers={"Retry-After": "2"})
        run.start()
        try:
            first = run.items.get(timeout=FIRST_RESULT_TIMEOUT_SECONDS)
        except queue.Empty:
            run.cancel.cancel()
            return Response({"code": errors.TIMEOUT, "message": "the query produced nothing in time"}, 504)
        if first[0] == "error":
            failure: QueryFailed = first[1]
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else None
            return Response(_failure_body(failure), HTTP_STATUS.get(failure.code, 500), headers=headers)
        return self._stream(request, run, first)

    def _stream(self, request: Request, run: _Run, first: tuple[str, Any]) -> Any:

        as_csv = request.accepted_renderer.format == "csv"
        media = "text/csv; charset=utf-8" if as_csv else "application/x-ndjson"
        response = StreamingHttpResponse(_Body(run, first, as_csv), content_type=media)
        if run.query_id:
            response["X-Query-Id"] = run.query_id
        return response

"""The request pipeline of a connection, whatever its dialect: look up,
validate, throttle, charge, call, settle, and answer errors.

``RequestPipeline`` is a mixin of ``realtime.consumers.RealtimeConsumer``
(and so of the Socket.IO bridge, which subclasses it): a decoded ``Frame``
goes in through ``handle_request``; what a request sends goes out through
the connection's ``send_event``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings

from realtime import charging, errors, lifecycle, logcontext, metrics, settlement, tenancy
from realtime.context import RequestContext
from realtime.errors import NotFound, ProtocolError, RateLimited, Unauthorized, ValidationFailed
from realtime.payloads import EmptyPayload
from realtime.protocol import Frame, RequestId
from realtime.registry import InboundEvent, registry
from realtime.throttles import retry_after_seconds, user_buckets

if TYPE_CHECKING:
    from realtime.consumers import RealtimeConsumer

log = logging.getLogger("realtime.consumers")
requests_log = logging.getLogger("ledgercore.requests")

SETTLE_WAIT_SECONDS = 2.0
MAX_CONCURRENT_TASKS = 16


class RequestPipeline:
    """What a connection does with one request (see the module docstring).
    The connection provides the attributes below and ``send_event``."""

    sid: str
    user_id: str
    user_pk: int
    application_id: str
    bucket: Any
    tasks: set[asyncio.Task[None]]

    async def send_event(self, event: str, data: dict[str, Any], request_id: RequestId | None = None) -> None:
        raise NotImplementedError

    async def throttled(self, request_id: RequestId | None) -> bool:
        """Takes a frame from the connection's bucket; True (and the client
        told) when it is empty."""
        wait = self.bucket.take()
        if wait:
            metrics.THROTTLED.labels("connection").inc()
            await self._send_error(
                RateLimited("too many frames on this connection", retry_after=retry_after_seconds(wait)),
                "rate_limit_error",
                request_id,
                None,
            )
            return True
        return False

    async def handle_request(self, frame: Frame) -> None:
        """One decoded request, whatever its dialect: look up, validate,
        throttle, then execute (charged). What is logged meanwhile names
        it (and the tasks it starts inherit that)."""
        with logcontext.bound(event=frame.event[:100], request_id=frame.id):
            await self._handle(frame)

    async def _handle(self, frame: Frame) -> None:
        spec = registry.get(frame.event)
        # This pipeline is always a RealtimeConsumer's (a mixin of it).
        ctx = RequestContext(cast("RealtimeConsumer", self), frame.event, frame.id)
        metrics.EVENTS_IN.labels(spec.name if spec is not None else "unknown").inc()
        if spec is None:
            await self._send_error(NotFound(f"unknown event {frame.event[:100]!r}"), "error", frame.id, frame.event)
            return
        if lifecycle.refuses(spec.name):
            await self._send_error(lifecycle.unavailable(), spec.error_event, frame.id, spec.name)
            return
        if spec.serializer is EmptyPayload and frame.data == {}:
            # What the serializer would find (a ping's payload), without it.
            data: dict[str, Any] = {}
        else:
            payload = spec.serializer(data=frame.data)
            if not payload.is_valid():
                invalid = errors.flatten_errors(payload.errors)
                await self._send_error(
                    ValidationFailed(f"invalid {spec.name} payload", invalid), spec.error_event, frame.id, spec.name
                )
                return
            data = payload.validated_data
        try:
            wait = await user_buckets().take(spec.throttle, self.user_id)
        except ProtocolError as exc:  # Redis does not answer: UNAVAILABLE, nothing charged
            await self._send_error(exc, spec.error_event, frame.id, spec.name)
            return
        if wait:
            metrics.THROTTLED.labels(spec.throttle).inc()
            await self._send_error(
                RateLimited(f"too many {spec.throttle} requests for this user", retry_after=retry_after_seconds(wait)),
                "rate_limit_error",
                frame.id,
                spec.name,
            )
            return
        if spec.concurrent:
            if len(self.tasks) >= MAX_CONCURRENT_TASKS:
                metrics.THROTTLED.labels("in_flight").inc()
                await self._send_error(
                    RateLimited("too many requests in flight on this connection", retry_after=1),
                    "rate_limit_error",
                    frame.id,
                    spec.name,
                )
                return
            task = asyncio.create_task(self._execute(ctx, spec, data))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            await self._execute(ctx, spec, data)

    async def _execute(self, ctx: RequestContext, spec: InboundEvent, data: dict[str, Any]) -> None:
        """Charge -> execute -> settle; a request the balance cannot cover is
        answered with insufficient_credits and not executed. With
        ``LEDGERCORE_REQUEST_LOG`` each request ends with a log line."""
        if not settings.LEDGERCORE_REQUEST_LOG:
            await self._charged(ctx, spec, data)
            return
        started = time.perf_counter()
        outcome = "cancelled"
        try:
            outcome = await self._charged(ctx, spec, data) or "ok"
        finally:
            requests_log.info(
                "%s %s", spec.name, outcome, extra={"duration_ms": round((time.perf_counter() - started) * 1000, 1)}
            )

    async def _charged(self, ctx: RequestContext, spec: InboundEvent, data: dict[str, Any]) -> str | None:
        requested_app = data.get("applicationId")
        if requested_app and requested_app != self.application_id:
            if not await tenancy.is_member_async(self.user_pk, requested_app):
                await self._send_error(
                    Unauthorized("not a member of that application", applicationId=requested_app),
                    spec.error_event,
                    ctx.request_id,
                    spec.name,
                )
                return errors.UNAUTHORIZED
            ctx = replace(ctx, application=requested_app)
        charge = None
        if spec.price:
            try:
                token = await charging.charger.reserve(ctx, spec.price)
            except charging.InsufficientCredits as exc:
                await ctx.send(
                    "insufficient_credits",
                    {"required": exc.required, "available": exc.available, "action": exc.action},
                )
                return "insufficient_credits"
            except Exception as exc:
                if not errors.is_database_error(exc):
                    raise
                # Nothing was held: the request is refused, not charged.
                log.warning("%s refused: the database does not answer (request id %r)", spec.name, ctx.request_id)
                await self._send_error(errors.database_unavailable(), spec.error_event, ctx.request_id, spec.name)
                return errors.UNAVAILABLE
            if token is not None:
                charge = charging.Charge(charging.charger, token)
                ctx = replace(ctx, charge=charge)
        try:
            failure = await self._guarded(ctx, _bind(spec, data), spec.error_event)
        except asyncio.CancelledError:
            # The connection closed during the request: its hold is released
            # now rather than when it expires.
            if charge is not None and not charge.settled and not ctx.meter.handed_over:
                settlement.settle_shielded(spec, ctx, charge, True)
            if not ctx.meter.handed_over:
                lifecycle.stopped(ctx, spec)
            raise
        if charge is not None and not charge.settled:
            # The client may close as soon as it has the answer, which cancels
            # this task: the settlement (capture, or the release of a refused
            # or failed request) must still happen, so it runs shielded.
            # It is awaited only briefly: while the database does not answer
            # it goes on retrying in the background, and the connection
            # goes on serving.
            release = failure is not None and failure not in errors.CHARGED_FAILURES
            await asyncio.wait({settlement.settle_shielded(spec, ctx, charge, release)}, timeout=SETTLE_WAIT_SECONDS)
        return failure

    async def _guarded(self, ctx: RequestContext, call: Any, error_event: str) -> str | None:
        """Runs a handler; sends any error (mapped to the wire by
        realtime.errors); returns its code (None: success)."""
        try:
            await call(ctx)
            return None
        except Exception as exc:
            error = errors.to_protocol_error(exc, ctx.event)
            if error is None:
                log.exception(
                    "unhandled error in %s (request id %r, sid %s, user %s)",
                    ctx.event,
                    ctx.request_id,
                    self.sid,
                    self.user_id,
                )
                error = errors.unexpected()
            elif errors.is_database_error(exc):
                log.warning(
                    "%s failed: the database does not answer (%s; request id %r, sid %s)",
                    ctx.event,
                    type(exc).__name__,
                    ctx.request_id,
                    self.sid,
                )
            await self._send_error(error, error_event, ctx.request_id, ctx.event)
            return error.code

    async def _send_error(self, exc: ProtocolError, event: str, request_id: RequestId | None, event_name: Any) -> None:
        metrics.ERRORS.labels(exc.code).inc()
        await self.send_event(*errors.envelope(exc, event, event_name), request_id)


def _bind(spec: InboundEvent, data: dict[str, Any]) -> Any:
    async def call(ctx: RequestContext) -> None:
        await spec.handler(ctx, data)

    return call

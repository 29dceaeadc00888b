"""The WebSocket consumer: connect, authenticate, rooms, decode, send; each
request then goes through the pipeline (realtime.requests).

It knows the protocol and nothing of any domain: every event goes through the
registry (realtime.registry), every room through its namespace
(realtime.rooms).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from realtime import (
    auth,
    background,
    departures,
    errors,
    fanout,
    history,
    ids,
    lifecycle,
    logcontext,
    metrics,
    presence,
    rooms,
    streams,
    tenancy,
    transport,
)
from realtime.context import RequestContext
from realtime.errors import Internal, ProtocolError, Unauthorized
from realtime.hops import WithoutConnectionHops
from realtime.local import local_rooms
from realtime.protocol import RequestId, decode, encode, now_ms, peek_id
from realtime.redis import RedisUnavailable, is_outage
from realtime.registry import registry
from realtime.requests import RequestPipeline
from realtime.throttles import connection_bucket
from realtime.transport import SharedFrame

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_INTERNAL = 1011


class Refused(Exception):
    """A connection that may not be served: the error its client is told,
    and the WebSocket close code."""

    def __init__(self, error: ProtocolError, close_code: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.close_code = close_code


class RealtimeConsumer(RequestPipeline, WithoutConnectionHops, AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    user_id: str
    user_pk: int
    application_id: str
    sid: str

    def open_connection(self) -> None:
        """The per-connection state, before anything is received."""
        self.sid = ids.random_hex()
        self.authenticated = False
        self.rooms: dict[str, rooms.Namespace] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.streams = streams.RoomStreams(self)
        self.bucket = connection_bucket()
        # The process's background tasks (realtime.background), started
        # with its first connection.
        background.start()

    async def connect(self) -> None:
        self.open_connection()
        if not auth.origin_allowed(self.scope):
            # A page of another site (cross-site WebSocket hijacking): the
            # handshake is refused with 403.
            log.warning("refused a WebSocket handshake from a page of an origin not allowed")
            await self.close()
            return
        await self.accept()
        lifecycle.register(self)
        try:
            user = await self.authenticate(auth.token_from_scope(self.scope), _query_param(self.scope, "applicationId"))
        except Refused as refusal:
            await self._send_error(refusal.error, "error", None, None)
            await self.close(code=refusal.close_code)
            return
        # The personal room is recovered at connect: ?sinceOffset=&sinceEpoch=
        # (its last position seen), answered in ``connected``.
        asked = (
            _query_param(self.scope, "sinceOffset") is not None or _query_param(self.scope, "sinceEpoch") is not None
        )
        since = history.parse_since(_query_param(self.scope, "sinceOffset"), _query_param(self.scope, "sinceEpoch"))
        await self.start_session(user, since, asked)

    async def authenticate(self, token: str | None, requested_app: str | None) -> Any:
        """The connection's user (its bound application set), or Refused
        with the error to send and the close code."""
        try:
            return await self._authenticate(token, requested_app)
        except Unauthorized as exc:
            raise Refused(exc, CLOSE_UNAUTHORIZED) from None
        except Exception as exc:
            if errors.is_database_error(exc):
                log.warning("authentication: the database does not answer (sid %s)", self.sid)
                raise Refused(errors.database_unavailable(), CLOSE_INTERNAL) from None
            log.exception("authentication failed unexpectedly (sid %s)", self.sid)
            raise Refused(Internal("the server could not authenticate this connection"), CLOSE_INTERNAL) from None

    async def start_session(self, user: Any, since: history.Position | None, asked: bool) -> None:
        """An authenticated connection: its personal room joined (recovered
        from ``since``), ``connected`` sent, then the connect hooks."""
        self.user_id = user.username
        self.user_pk = user.pk
        self.authenticated = True
        logcontext.bind(user=self.user_id, application=self.application_id, sid=self.sid)
        metrics.CONNECTIONS.inc()
        personal = f"user:{self.user_id}"
        # Under the stream lock (as a subscription): the room's events wait
        # for ``connected``, what it recovers and what the connect hooks
        # send (the balance), as they would behind a consumer's handler.
        async with self.streams.lock:
            # keep: while Redis is down the personal room is joined when it returns.
            _, recovery = await self.join_room(personal, rooms.namespaces["user"], since, keep=True)
            hello = {
                "userId": self.user_id,
                "sid": self.sid,
                "timestamp": now_ms(),
                "applicationId": self.application_id,
            }
            await self.send(text_data=streams.answer(encode("connected", hello), personal, recovery, asked))
            if recovery is not None:
                await self.streams.replay(personal, recovery)
            for hook in registry.connect_hooks:
                await self._guarded(RequestContext(self, "connected", None), hook, "error")

    async def _authenticate(self, token: str | None, requested_app: str | None) -> Any:
        """The connection's user and bound application, or Unauthorized."""
        if token is not None:
            try:
                identity = await auth.verify_token_async(token)
            except auth.AuthenticationFailed as exc:
                raise Unauthorized(str(exc)) from None
            subject, requested_app = identity.user_id, requested_app or identity.application_id
        else:
            session_user = self.scope.get("user")
            if session_user is None or not session_user.is_authenticated:
                raise Unauthorized("authentication required: pass ?token= or an Authorization header")
            if not session_user.is_staff or not auth.origin_allowed(self.scope):
                raise Unauthorized("session authentication is for staff on an allowed origin")
            subject = session_user.username
        try:
            user, self.application_id = await tenancy.bind_async(subject, requested_app)
        except tenancy.TenancyError as exc:
            raise Unauthorized(str(exc)) from None
        return user

    async def disconnect(self, code: int) -> None:
        for task in list(getattr(self, "tasks", ())):
            task.cancel()
        await self._leave_all()

    async def _leave_all(self) -> None:
        if hasattr(self, "streams"):
            self.streams.close()
        if getattr(self, "authenticated", False):
            if not getattr(self, "uncounted", False):
                self.uncounted = True
                metrics.CONNECTIONS.dec()
            for room in list(self.rooms):
                await self.leave_room(room)
        lifecycle.unregister(self)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # However the consumer ends (a failure outside a handler, the server
        # cancelling it), its rooms are left: a membership that outlives its
        # socket is a phantom in every subscriberCount.
        try:
            await super().__call__(scope, receive, send)
        finally:
            if getattr(self, "rooms", None):
                await asyncio.shield(self._leave_all())

    # --- sending -----------------------------------------------------------

    def write_frame(
        self, frame: SharedFrame, room: str | None = None, position: int | None = None, *, counted: bool = False
    ) -> bool:
        """Write a frame shared by many sockets without the ASGI send when
        the server allows it (``realtime.transport``); False otherwise. A
        ``room`` frame may be conflated while the socket lags. ``counted``:
        the caller counts the frame in the metrics (once for many)."""
        writer = self.scope.get(transport.SCOPE_KEY)
        if writer is None:
            return False
        writer.write(frame, room, position)
        if not counted:
            metrics.count_out(frame.text)
        return True

    async def send_paced(self, frame: SharedFrame) -> None:
        """Send a frame of a stream that may wait for the client (a query's
        response chunks): under daphne written without the ASGI send once
        the socket no longer lags (``DirectWriter.write_paced``), so that a
        client reading slower than the stream is produced slows it down
        instead of being closed as a slow consumer; elsewhere the ASGI send."""
        if not self.writes_frames():
            await self.send(text_data=frame.text)
            return
        if await self.scope[transport.SCOPE_KEY].write_paced(frame):
            metrics.count_out(frame.text)

    def writes_frames(self) -> bool:
        """Whether native frames are written straight to this socket
        (``send_paced``; a frame built for it may be framed in advance)."""
        return self.scope.get(transport.SCOPE_KEY) is not None

    def writes_now(self) -> bool:
        """Whether a room event can be written at once, without waiting
        (``write_now``)."""
        return self.writes_frames()

    def write_now(self, text: str, frame: SharedFrame) -> bool:
        """Write a room event (``text``, shared as ``frame``) at once, after
        ``writes_now``; not counted in the metrics (the fan-out counts)."""
        return self.write_frame(frame, counted=True)

    def stalled(self) -> bool:
        """Whether room events should wait for this socket to drain
        (``realtime.backpressure``)."""
        writer = self.scope.get(transport.SCOPE_KEY)
        return writer is not None and writer.outbound.stalled

    async def drained(self, held: Callable[[], tuple[int, int]]) -> bool:
        """Wait until the socket takes room events again (True), or False
        when it closes (as a slow consumer when ``held()`` (frames, bytes)
        with what is buffered exceeds its limits)."""
        writer = self.scope.get(transport.SCOPE_KEY)
        return writer is None or await writer.outbound.drained(held)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        # A text frame is written as a shared frame of one where the server
        # allows it (``realtime.transport``): the same buffer limits, without
        # the ASGI send's layers and autobahn's framing per message. A frame
        # the writer does not write (the socket is not open) takes the ASGI
        # send, which drops it or raises as it always has.
        writer = self.scope.get(transport.SCOPE_KEY) if not close else None
        if text_data is None or writer is None or not writer.write(SharedFrame(text_data)):
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        if text_data is not None:
            metrics.count_out(text_data)

    async def send_event(self, event: str, data: dict[str, Any], request_id: RequestId | None = None) -> None:
        await self.send(text_data=encode(event, data, request_id))

    async def room_event(self, message: dict[str, Any]) -> None:
        """A broadcast to one of this connection's rooms (realtime.push),
        handed over by the process's receiver (realtime.fanout)."""
        if message["room"] not in getattr(self, "rooms", {}):
            return
        # In offset order, exactly once (realtime.streams).
        await self.streams.deliver(message)

    def take_event(self, message: dict[str, Any]) -> bool | None:
        """``room_event`` without waiting, when nothing stands in its way
        (``RoomStreams.deliver_now``): True when written (not counted in the
        metrics), False when there was nothing to write, None when
        ``room_event`` must take it."""
        if message["room"] not in getattr(self, "rooms", {}):
            return False
        return self.streams.deliver_now(message)

    async def lifecycle_close(self, message: dict[str, Any]) -> None:
        """The process drains (realtime.lifecycle): close after what was
        queued for this connection."""
        await self.close(code=message["code"], reason=message["reason"])

    # --- rooms -------------------------------------------------------------

    async def join_room(
        self, room: str, namespace: rooms.Namespace, since: history.Position | None = None, *, keep: bool = False
    ) -> tuple[int, history.Recovery | None]:
        """Join; returns the room's connection count and, for a room with
        history, its position (read after joining the group, so that every
        later event reaches this connection) and what was missed since
        ``since``. Raises Unavailable when Redis does not answer; with
        ``keep`` the membership is kept instead and registered when Redis
        returns (its events then come as they arrive, without recovery,
        until the client reconnects)."""
        self.rooms[room] = namespace
        failure: Exception | None = None
        recovery: history.Recovery | None = None
        try:
            # The process joins the room's group for its connections.
            await fanout.fanout.join(room, self)
            if namespace.history:
                recovery = await self.streams.open(room, since)
        except Exception as exc:  # noqa: BLE001 - undone below, then raised again
            failure = exc
        if failure is None or keep:
            try:
                count, first = await presence.store().join(room, self.channel_name, self.user_id, keep=keep)
            except Exception as exc:  # noqa: BLE001 - undone below, then raised again
                failure = failure or exc
        if failure is not None:
            if keep and is_outage(failure):
                log.warning("Redis does not answer: %s joins %s when it returns", self.sid, room)
                return 0, None
            self.rooms.pop(room, None)
            self.streams.forget(room)
            await fanout.fanout.leave(room, self)
            if is_outage(failure):
                log.warning(
                    "Redis does not answer: %s could not join %s (%r, caused by %r)",
                    self.sid,
                    room,
                    failure,
                    failure.__cause__,
                )
                raise RedisUnavailable from failure
            raise failure
        if first and namespace.presence_events:
            await departures.announce(
                room,
                "user_joined_room",
                {"userId": self.user_id, "room": room, "joinedAt": now_ms()},
                skip_user=self.user_id,
            )
        return count, recovery

    async def leave_room(self, room: str) -> None:
        namespace = self.rooms.pop(room, None)
        if namespace is None:
            return
        await fanout.fanout.leave(room, self)
        self.streams.forget(room)
        local_rooms.discard(room, self)
        _, last = await presence.store().leave(room, self.channel_name, self.user_id)
        if last and namespace.presence_events:
            departure = presence.Departure(room, self.user_id, self.channel_name, True)
            if not await departures.announce_left(departure):
                presence.store().retry_announcement(departure)

    # --- receiving ---------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not getattr(self, "authenticated", False):
            return
        try:
            await self._receive(text_data, bytes_data)
        except ProtocolError as exc:
            await self._send_error(exc, "error", None, None)
        except Exception:
            # Infrastructure failures outside a handler must not take the
            # connection down.
            log.exception("failed to process a frame (sid %s, user %s)", self.sid, self.user_id)
            await self._send_error(Internal("the server failed to process this frame"), "error", None, None)

    async def _receive(self, text_data: str | None, bytes_data: bytes | None) -> None:
        frame, parsed, error = decode(text_data, bytes_data, settings.LEDGERCORE_MAX_FRAME_BYTES)
        request_id = frame.id if frame else peek_id(parsed)
        if await self.throttled(request_id):
            return
        if error is not None or frame is None:
            event_name = parsed.get("event") if isinstance(parsed, dict) else None
            await self._send_error(error or Internal("undecodable frame"), "error", request_id, event_name)
            return
        await self.handle_request(frame)


def _query_param(scope: dict[str, Any], name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None

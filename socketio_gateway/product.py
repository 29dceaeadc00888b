"""The product over Socket.IO, namespace ``/``: the native consumer's own
pipeline (``realtime.consumers.RealtimeConsumer``: authentication, rooms,
registry dispatch, throttles, charging, errors, recovery), with another
encoding of what goes out.

- CONNECT ``{token, applicationId?}`` authenticates; a refusal is a
  CONNECT_ERROR ``{message, data: {code, message, ...}}``.
- ``42["query", {...}]`` is the native ``{"event": "query", "data": {...}}``;
  every reply and pushed event arrives as ``42[event, data]``.
- A request sent with an ack is acknowledged with its first reply, as
  ``{"event": name, "data": payload}`` (``query_started`` with the
  ``queryId``, ``pong``, ``subscribed``, or the request's error event);
  the reply is emitted as an event as well.
- An event of a room with history carries one more argument, a string
  offset, for connection state recovery (``socketio_gateway.recovery``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from realtime import ids, lifecycle, metrics, rooms
from realtime.consumers import RealtimeConsumer, Refused
from realtime.context import RequestContext
from realtime.errors import Internal, ProtocolError, ValidationFailed
from realtime.history import Position
from realtime.protocol import Frame, RequestId
from realtime.transport import SharedFrame
from socketio_gateway import recovery
from socketio_gateway.packets import dumps
from socketio_gateway.sockets import NamespaceSocket, SocketIOSession

log = logging.getLogger(__name__)

PRODUCT_NAMESPACE = "/"
_CACHE_SIZE = 512


class _Outbound:
    """A native frame as a Socket.IO EVENT packet (Engine.IO message text),
    the same for every session that gets it: a room event's recovery offset
    is its room position, ``epoch:offset``."""

    __slots__ = ("_shared", "data", "epoch", "event", "id", "offset", "packet", "room")

    def __init__(self, text: str) -> None:
        frame = json.loads(text)
        self.event: str = frame["event"]
        self.data: Any = frame.get("data", {})
        self.id: RequestId | None = frame.get("id")
        self.room: str | None = frame.get("room")
        self.offset: int | None = frame.get("offset")
        self.epoch: str | None = frame.get("epoch")
        packet = "42[" + dumps(self.event) + "," + dumps(self.data)
        if self.room is not None and self.epoch is not None and self.offset is not None:
            packet += ',"' + recovery.token(self.epoch, self.offset) + '"'
        self.packet = packet + "]"
        self._shared: SharedFrame | None = None

    @property
    def positioned(self) -> bool:
        return self.room is not None and self.offset is not None and self.epoch is not None

    def shared(self) -> SharedFrame:
        if self._shared is None:
            self._shared = SharedFrame(self.packet)
        return self._shared


# One translation per frame text for every session of the process: a room
# event reaches each member with the same text.
_translated: dict[str, _Outbound] = {}


def _outbound(text: str) -> _Outbound:
    found = _translated.get(text)
    if found is None:
        if len(_translated) >= _CACHE_SIZE:
            _translated.clear()
        found = _translated[text] = _Outbound(text)
    return found


class ProductSession(SocketIOSession):
    def namespace_socket(self, namespace: str) -> NamespaceSocket | None:
        return ProductSocket(self, namespace) if namespace == PRODUCT_NAMESPACE else None


class ProductSocket(NamespaceSocket):
    def __init__(self, session: SocketIOSession, namespace: str) -> None:
        super().__init__(session, namespace)
        self.connection = BridgeConsumer(self)

    async def connect(self, auth: dict[str, Any]) -> None:
        await self.connection.sio_connect(auth)

    async def event(self, args: list[Any], ack_id: int | None) -> None:
        await self.connection.sio_event(args, ack_id)

    async def disconnect(self, reason: str) -> None:
        await self.connection.sio_disconnect()

    async def dispatch(self, message: dict[str, Any]) -> None:
        if getattr(self.connection, "authenticated", False):
            await self.connection.dispatch(message)


class BridgeConsumer(RealtimeConsumer):
    """The native consumer, fed by a Socket.IO socket instead of a WebSocket."""

    def __init__(self, socket: ProductSocket) -> None:
        super().__init__()
        self.socket = socket
        session = socket.session
        self.scope = session.scope
        self.channel_layer = session.layer
        self.channel_name = session.channel_name
        self.acks: set[RequestId] = set()
        self.trail = recovery.Trail()
        self.pid = ids.random_hex()

    # --- Socket.IO side -------------------------------------------------------------

    async def sio_connect(self, auth: dict[str, Any]) -> None:
        self.open_connection()
        token, app = auth.get("token"), auth.get("applicationId")
        try:
            user = await self.authenticate(
                token if isinstance(token, str) else None, app if isinstance(app, str) else None
            )
        except Refused as refusal:
            await self.socket.refuse({"message": refusal.error.message, "data": refusal.error.payload()})
            return
        lifecycle.register(self)
        saved = await self._saved(auth, user.username)
        if saved is None:
            await self.socket.accept({"pid": self.pid})
            await self.start_session(user, None, False)
            return
        rejoin, positions = saved
        # The same pid: socket.io-client sets socket.recovered.
        self.pid = auth["pid"]
        await self.socket.accept({"pid": self.pid})
        await self.start_session(user, positions.get(f"user:{user.username}"), True)
        for room in rejoin:
            await self._rejoin(room, positions.get(room))

    async def _saved(self, auth: dict[str, Any], user_id: str) -> tuple[list[str], dict[str, Position]] | None:
        received = recovery.parse_offset(auth.get("offset"))
        if received is None:
            return None
        try:
            saved = await recovery.take(auth.get("pid"))
        except Exception:  # Redis not answering: a fresh session, not a failed one
            log.warning("could not read a Socket.IO session to recover", exc_info=True)
            return None
        if saved is None or saved.user_id != user_id:
            return None
        positions = saved.trail.positions(received)
        if positions is None:
            return None
        return [r for r in saved.rooms if r != f"user:{user_id}"], positions

    async def _rejoin(self, room: str, since: Position | None) -> None:
        """Join a room of the recovered session again (authorised again)
        and send what it missed."""
        ctx = RequestContext(self, "subscribe", None)
        try:
            namespace, rest = rooms.parse_room(room)
            await namespace.authorize(ctx, rest)
            async with self.streams.lock:
                _, found = await self.join_room(room, namespace, since)
                if found is not None:
                    await self.streams.replay(room, found)
        except ProtocolError as exc:
            log.info("Socket.IO session %s: room %s not rejoined: %s", self.sid, room, exc.code)

    async def sio_event(self, args: list[Any], ack_id: int | None) -> None:
        if not getattr(self, "authenticated", False):
            return
        name, payload = args[0], (args[1] if len(args) > 1 else None)
        if ack_id is not None:
            self.acks.add(ack_id)
        try:
            if await self.throttled(ack_id):
                return
            if not isinstance(name, str) or not name or len(name) > 100:
                raise ValidationFailed(
                    "invalid event name", {"event": ["A non-empty string of at most 100 characters."]}
                )
            if payload is None:
                payload = {}
            if not isinstance(payload, dict):
                await self._send_error(
                    ValidationFailed(f"invalid {name[:100]} payload", {"data": ["Expected a JSON object."]}),
                    "error",
                    ack_id,
                    name,
                )
                return
            await self.handle_request(Frame(event=name, data=payload, id=ack_id))
        except ProtocolError as exc:
            await self._send_error(exc, "error", ack_id, None)
        except Exception:
            log.exception("failed to process a Socket.IO event (sid %s, user %s)", self.sid, self.user_id)
            await self.send_event("error", Internal("the server failed to process this event").payload(), ack_id)

    async def sio_disconnect(self) -> None:
        if getattr(self, "authenticated", False):
            try:
                await recovery.save(self.pid, self.user_id, list(self.rooms), self.trail)
            except Exception:  # the session then cannot be recovered; nothing else is lost
                log.warning("could not keep Socket.IO session %s for recovery", self.sid, exc_info=True)
        for task in list(self.tasks):
            task.cancel()
        await self._leave_all()

    # --- what the native consumer sends ---------------------------------------------

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        if text_data is None:
            return
        metrics.count_out(text_data)
        out = _outbound(text_data)
        if out.id is not None and out.id in self.acks:
            await self._ack(out.id, out.event, out.data)
        if out.positioned:
            self.trail.record(out.room, out.epoch, out.offset)  # type: ignore[arg-type]
        # One frame for every member of a room (framed once where the
        # server allows it, as the native path does).
        await self.socket.session.write_frame(out.shared())

    def write_frame(
        self, frame: SharedFrame, room: str | None = None, position: int | None = None, *, counted: bool = False
    ) -> bool:
        # Native frames are never written as they are to a Socket.IO client:
        # the process-local fan-out (realtime.local) then calls ``send``.
        return False

    def writes_frames(self) -> bool:
        # Native frames reach a Socket.IO client re-encoded, through ``send``.
        return False

    def writes_now(self) -> bool:
        return self.socket.session.direct_writer() is not None

    def write_now(self, text: str, frame: SharedFrame) -> bool:
        """A room event, as ``send`` writes it (room events carry no request
        id to acknowledge), without waiting; after ``writes_now``."""
        writer = self.socket.session.direct_writer()
        assert writer is not None, "write_now without writes_now"
        out = _outbound(text)
        if out.positioned:
            self.trail.record(out.room, out.epoch, out.offset)  # type: ignore[arg-type]
        writer.write(out.shared())
        return True

    async def send_event(self, event: str, data: dict[str, Any], request_id: RequestId | None = None) -> None:
        if request_id is not None and request_id in self.acks:
            await self._ack(request_id, event, data)
        await self.socket.emit(event, data)
        metrics.EVENTS_OUT.labels(event).inc()

    async def _ack(self, request_id: RequestId, event: str, data: Any) -> None:
        self.acks.discard(request_id)
        if isinstance(request_id, int):
            await self.socket.ack(request_id, [{"event": event, "data": data}])

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        await self.socket.session.close(reason or "server close")

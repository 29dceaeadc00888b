"""One frame, framed once, written to many sockets.

ASGI gives an application one way to write to a WebSocket: ``await
send({"type": "websocket.send", "text": ...})``, per socket. Under daphne that
path runs the middleware's send wrappers, encodes the text and frames it
again (autobahn) for every socket, which is most of the cost of sending one
live chart update to a thousand subscribers.

Under daphne, ``CaptureWriter`` (outermost ASGI middleware of the WebSocket
route) recognises the server's own send callable and gives the connection a
``DirectWriter``: a ``SharedFrame`` is encoded and framed once (autobahn's
``PreparedMessage``, made for broadcasting) and its bytes are written to
each socket, sent at once when the socket has nothing buffered
(``_write_now``). Both the writer and the ASGI send it wraps keep to the
connection's outbound buffer limits (``realtime.backpressure``). Per-message compression, if a client negotiated it
(daphne does not offer it), and frames queued by autobahn are left to
autobahn's ``sendPreparedMessage``. Any other server (uvicorn in the test
suite) gets no writer and the ordinary ASGI send is used. Both paths write
synchronously on the event loop's thread, so frames keep the order in which
they were sent.

``CaptureWriter`` also sets the inbound limits of each daphne connection
(``harden``): a message over ``LEDGERCORE_MAX_MESSAGE_BYTES`` closes the
connection with 1009 and a reason (autobahn's default, which daphne keeps,
drops the TCP connection without a close frame), and a text frame that is
not valid UTF-8 reaches the consumer, which answers ``validation_error``,
instead of failing the connection.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

SCOPE_KEY = "realtime.writer"


class SharedFrame:
    """A text frame for many sockets; framed at most once."""

    __slots__ = ("_prepared", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._prepared: Any = None

    def prepared(self) -> Any:
        if self._prepared is None:
            from autobahn.websocket.protocol import PreparedMessage

            # A server's frames are not masked (RFC 6455 5.1).
            self._prepared = PreparedMessage(self.text.encode(), False, False, False)
        return self._prepared


class DirectWriter:
    """Writes prepared frames to one daphne WebSocket connection, within the
    connection's outbound buffer limits (``realtime.backpressure``)."""

    __slots__ = ("outbound", "protocol", "server")

    def __init__(self, server: Any, protocol: Any) -> None:
        from realtime.backpressure import Outbound

        self.server = server
        self.protocol = protocol
        self.outbound = Outbound(protocol)

    def write(self, frame: SharedFrame, room: str | None = None, position: int | None = None) -> bool:
        """Write ``frame``; False when the socket is closing or gone (as
        daphne's own send, nothing is written then) or closes now as a slow
        consumer. Given a ``room``, the frame is a live update that may be
        conflated with later ones of that room while the connection lags."""
        if not self._open():
            return False
        if room is not None:
            return self.outbound.offer_live(room, position, frame, self._write)
        return self.outbound.write(functools.partial(self._write, frame), len(frame.prepared().payloadHybi))

    def _open(self) -> bool:
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return False
        details = self.server.connections.get(protocol)
        return details is not None and not details.get("disconnected")

    def _write(self, frame: SharedFrame) -> None:
        if not self._open():
            return
        protocol = self.protocol
        prepared = frame.prepared()
        if getattr(protocol, "_perMessageCompress", True) is None and not getattr(protocol, "send_queue", True):
            # What sendPreparedMessage does without compression, minus the
            # arguments of a debug log line that autobahn formats on every
            # send whether or not it is logged.
            _write_now(protocol.transport, prepared.payloadHybi)
        else:
            protocol.sendPreparedMessage(prepared)


def _write_now(transport: Any, data: bytes) -> None:
    """Twisted's ``write`` only buffers: the bytes leave on a later turn of
    the event loop, after registering the socket for writability and
    unregistering it again, which for a thousand sockets costs about as much
    as the sends. When nothing is buffered before ``data`` on a plain TCP
    connection, send it now through the transport's own ``writeSomeData``
    (which handles EWOULDBLOCK and a lost connection) and buffer only what
    the socket did not take; otherwise, or if the connection is lost, leave
    it all to ``write``."""
    if (
        getattr(transport, "TLS", True)
        or not transport.connected
        or transport.disconnecting
        or getattr(transport, "_writeDisconnected", True)
        or transport.dataBuffer
        or getattr(transport, "_tempDataBuffer", True)
    ):
        transport.write(data)
        return
    sent = transport.writeSomeData(data)
    if not isinstance(sent, int):  # the connection is lost: let write() see to it
        transport.write(data)
    elif sent < len(data):
        transport.write(data[sent:])


def is_closed_error(exc: BaseException) -> bool:
    """Whether ``exc``, raised by an ASGI send, says the socket is closing
    or gone: daphne (autobahn's ``Disconnected`` while the close handshake
    runs), uvicorn (``ClientDisconnected``, an OSError, or a send after the
    application's own close)."""
    if isinstance(exc, OSError):
        return True
    try:
        from autobahn.exception import Disconnected
    except ImportError:  # pragma: no cover - daphne is a dependency
        pass
    else:
        if isinstance(exc, Disconnected):
            return True
    return isinstance(exc, RuntimeError) and "websocket.close" in str(exc)


def direct_writer(send: Any) -> DirectWriter | None:
    """A DirectWriter when ``send`` is daphne's send callable for a WebSocket
    connection (``partial(Server.handle_reply, protocol)``), else None."""
    if not isinstance(send, functools.partial) or len(send.args) != 1:
        return None
    try:
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # pragma: no cover - daphne is a dependency
        return None
    server = getattr(send.func, "__self__", None)
    protocol = send.args[0]
    if getattr(send.func, "__name__", None) != "handle_reply" or not isinstance(server, Server):
        return None
    if not isinstance(protocol, WebSocketProtocol):
        return None
    return DirectWriter(server, protocol)


class CaptureWriter:
    """ASGI middleware: puts the connection's DirectWriter (or None) in the
    scope under ``SCOPE_KEY``. Must wrap the middleware that wrap ``send``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket":
            writer = direct_writer(send)
            scope = {**scope, SCOPE_KEY: writer}
            if writer is not None:
                from django.conf import settings

                harden(writer.protocol, settings.LEDGERCORE_MAX_MESSAGE_BYTES)
            send = guarded_send(send, writer.outbound if writer is not None else None)
        return await self.inner(scope, receive, send)


def guarded_send(send: Any, outbound: Any) -> Any:
    """A connection's ASGI send, and the one place where a frame for a
    closing socket is dropped instead of raising into the handler that sent
    it: a socket closing as a slow consumer or in its close handshake
    (``outbound``, under daphne: the frame is not written, and the ASGI send
    is held to the connection's buffer limits), or a send the server
    refuses because the socket is closing or gone (``is_closed_error``)."""

    async def guarded(message: dict[str, Any]) -> None:
        if message.get("type") != "websocket.send":
            await send(message)
            return
        if outbound is not None and not outbound.admit():
            log.debug("dropped a frame for a closing socket (%s)", "slow consumer" if outbound.closing else "closing")
            return
        try:
            await send(message)
        except Exception as exc:
            if not is_closed_error(exc):
                raise
            log.debug("dropped a frame for a closing socket: %s", exc)
            return
        if outbound is not None:
            outbound.sent(message)

    return guarded


def harden(protocol: Any, max_message_bytes: int) -> None:
    """Inbound limits and failure handling of one daphne WebSocket
    connection (autobahn reads these options per connection; they are set
    here, before the handshake is accepted, so they apply to every frame).

    - ``failByDrop`` off: a connection failed by the server (message too
      big, protocol violation) gets a close frame with a code and a reason
      (RFC 6455 7.1.7) instead of a TCP reset.
    - A message (a frame, or the frames of a fragmented message together)
      over ``max_message_bytes`` fails the connection with 1009 as soon as
      its header announces the size; the payload is discarded unread. The
      limit is on what the client sends only: autobahn's own message limit
      would also refuse to send a larger message to the client.
    - Text frames are not UTF-8 validated by autobahn (which would fail the
      connection with 1007); one that is not valid UTF-8 is handed to the
      application with its invalid bytes as surrogate escapes, and the frame
      decoder answers it with ``validation_error``."""
    protocol.failByDrop = False
    # Checked below, with the same reason for one frame or many.
    protocol.maxFramePayloadSize = 0
    protocol.maxMessagePayloadSize = 0
    protocol.utf8validateIncoming = False
    begin = protocol.onMessageFrameBegin
    on_message = protocol.onMessage

    def on_message_frame_begin(length: int) -> None:
        begin(length)
        total = protocol.message_data_total_length
        if total > max_message_bytes and not protocol.failedByMe:
            reason = f"message of {total} bytes exceeds the {max_message_bytes}-byte limit"
            log.info("closing the connection of %s with 1009: %s", getattr(protocol, "peer", "?"), reason)
            protocol.wasMaxMessagePayloadSizeExceeded = True
            protocol._fail_connection(protocol.CLOSE_STATUS_CODE_MESSAGE_TOO_BIG, reason)

    def on_text_or_binary(payload: bytes, is_binary: bool) -> None:
        try:
            on_message(payload, is_binary)
        except UnicodeDecodeError:
            # daphne decodes text strictly and raised before queueing it.
            protocol.application_queue.put_nowait(
                {"type": "websocket.receive", "text": payload.decode("utf-8", "surrogateescape")}
            )

    protocol.onMessageFrameBegin = on_message_frame_begin
    protocol.onMessage = on_text_or_binary

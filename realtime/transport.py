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
"""

from __future__ import annotations

import functools
from typing import Any

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
                # The ASGI send too is held to the connection's buffer limits.
                send = writer.outbound.guard(send)
        return await self.inner(scope, receive, send)

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
each socket, sent at once when the socket has nothing buffered. What
touches daphne's, autobahn's and Twisted's internals for this is in one
adapter, ``realtime.daphne_frames``. Both the writer and the ASGI send it
wraps keep to the connection's outbound buffer limits
(``realtime.backpressure``). Per-message compression, if a client negotiated it
(daphne does not offer it), and frames queued by autobahn are left to
autobahn's ``sendPreparedMessage``. Any other server (uvicorn in the test
suite) gets no writer and the ordinary ASGI send is used. Both paths write
synchronously on the event loop's thread, so frames keep the order in which
they were sent.

``CaptureWriter`` also sets the inbound limits of each daphne connection
(``daphne_frames.harden``): a message over ``LEDGERCORE_MAX_MESSAGE_BYTES`` closes the
connection with 1009 and a reason (autobahn's default, which daphne keeps,
drops the TCP connection without a close frame), and a text frame that is
not valid UTF-8 reaches the consumer, which answers ``validation_error``,
instead of failing the connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings

from realtime import daphne_frames
from realtime.backpressure import Outbound

log = logging.getLogger(__name__)

SCOPE_KEY = "realtime.writer"
# How often a paced stream looks whether its lagging connection drained.
PACE_SECONDS = 0.005


class SharedFrame:
    """A text frame for many sockets; framed at most once."""

    __slots__ = ("_prepared", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._prepared: Any = None

    def prepared(self) -> Any:
        if self._prepared is None:
            self._prepared = daphne_frames.prepare(self.text)
        return self._prepared


class DirectWriter:
    """Writes prepared frames to one daphne WebSocket connection, within the
    connection's outbound buffer limits (``realtime.backpressure``)."""

    __slots__ = ("outbound", "protocol", "server")

    def __init__(self, server: Any, protocol: Any) -> None:
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
        prepared = frame.prepared()
        if not self.outbound.admit():
            return False
        # Open (looked at above), and admit closes nothing it admits.
        daphne_frames.write_prepared(self.protocol, prepared)
        self.outbound.account(daphne_frames.frame_bytes(prepared))
        return True

    async def write_paced(self, frame: SharedFrame) -> bool:
        """Write a frame of a stream that can wait for its reader (a query's
        response chunks): while the connection lags (over the low
        watermark), wait for it to drain instead of writing on until it is
        closed as a slow consumer. False when the socket is closing or gone."""
        # Polled: no event says that the kernel took the bytes.
        while self._open() and not self.outbound.closing and self.outbound.lagging():  # noqa: ASYNC110
            await asyncio.sleep(PACE_SECONDS)
        return self.write(frame)

    def _open(self) -> bool:
        return daphne_frames.is_open(self.server, self.protocol)

    def _write(self, frame: SharedFrame) -> None:
        if self._open():
            daphne_frames.write_prepared(self.protocol, frame.prepared())


def is_closed_error(exc: BaseException) -> bool:
    """Whether ``exc``, raised by an ASGI send, says the socket is closing
    or gone: daphne (autobahn's ``Disconnected`` while the close handshake
    runs), uvicorn (``ClientDisconnected``, an OSError, or a send after the
    application's own close)."""
    if isinstance(exc, OSError | daphne_frames.Disconnected):
        return True
    return isinstance(exc, RuntimeError) and "websocket.close" in str(exc)


def direct_writer(send: Any) -> DirectWriter | None:
    """A DirectWriter when ``send`` is daphne's send callable for a WebSocket
    connection, else None."""
    found = daphne_frames.websocket_of(send)
    return DirectWriter(*found) if found is not None else None


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
                daphne_frames.harden(
                    writer.protocol,
                    settings.LEDGERCORE_MAX_MESSAGE_BYTES,
                    settings.LEDGERCORE_SLOW_CLOSE_GRACE_SECONDS,
                )
                daphne_frames.write_through(writer.protocol)
            send = guarded_send(send, writer.outbound if writer is not None else None)
            try:
                return await self.inner(scope, receive, send)
            finally:
                if writer is not None:
                    writer.outbound.released()
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

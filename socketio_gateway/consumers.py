"""The Channels entry points of Engine.IO: one HTTP consumer for
long-polling, one WebSocket consumer; both only carry packets to and from
the session (``engine.EngineSession``), wherever it lives.

Both are given the session class to open (``session_class``): the Socket.IO
session at ``/socket.io/``, the echo of the conformance configuration at
``/engine.io/``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from realtime import auth
from realtime.hops import WithoutConnectionHops
from realtime.transport import SCOPE_KEY
from socketio_gateway import links
from socketio_gateway.engine import POLLING, WEBSOCKET, EngineSession

log = logging.getLogger(__name__)

# Engine.IO's error codes (the reference server's JSON error bodies).
UNKNOWN_TRANSPORT, UNKNOWN_SID, BAD_HANDSHAKE_METHOD, BAD_REQUEST, UNSUPPORTED_PROTOCOL = 0, 1, 2, 3, 5
# A request to a session of another process is answered (or, a poll, held)
# within REMOTE_ANSWER_SECONDS, else its session is gone; a held poll is
# answered within the heartbeat (it gets the next ping), plus a margin.
REMOTE_ANSWER_SECONDS = 5.0
REMOTE_MARGIN_SECONDS = 5.0


def _query(scope: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _check(query: dict[str, str], transport: str) -> tuple[int, str] | None:
    if query.get("EIO") != "4":
        return UNSUPPORTED_PROTOCOL, "Unsupported protocol version"
    if query.get("transport") != transport:
        return UNKNOWN_TRANSPORT, "Transport unknown"
    return None


def _cors_headers(scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """Long-polling from a page of another origin (what a Node.js server's
    ``cors`` option allows). Socket.IO clients authenticate with a token in
    the CONNECT payload, which is not origin-restricted: any origin may poll
    without credentials; ``LEDGERCORE_ALLOWED_ORIGINS`` may also send
    cookies (``withCredentials``)."""
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin")
    if origin is None:
        return []
    cors = [
        (b"Access-Control-Allow-Methods", b"GET, POST, OPTIONS"),
        (b"Access-Control-Allow-Headers", headers.get(b"access-control-request-headers", b"content-type")),
        (b"Vary", b"Origin"),
    ]
    if origin.decode("latin-1") in settings.LEDGERCORE_ALLOWED_ORIGINS:
        return [(b"Access-Control-Allow-Origin", origin), (b"Access-Control-Allow-Credentials", b"true"), *cors]
    return [(b"Access-Control-Allow-Origin", b"*"), *cors]


class PollingConsumer(AsyncHttpConsumer):  # type: ignore[misc]  # channels is untyped
    def __init__(self, session_class: type[EngineSession] = EngineSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session_class = session_class

    async def handle(self, body: bytes) -> None:
        query = _query(self.scope)
        method = self.scope["method"]
        self.cors = _cors_headers(self.scope)
        if method == "OPTIONS":
            # A browser's preflight for a front end served from another origin.
            await self.send_response(204, b"", headers=self.cors)
            return
        error = _check(query, POLLING)
        if error is None and "sid" not in query and method != "GET":
            error = (BAD_HANDSHAKE_METHOD, "Bad handshake method")
        if error is None and method not in ("GET", "POST"):
            error = (BAD_REQUEST, "Bad request")
        if error is not None:
            await self._error(*error)
            return
        if "sid" not in query:
            session = self.session_class(self.scope)
            await self._text(200, await session.start(POLLING))
            return
        channel = links.channel_of(query["sid"])
        if channel is None or not (links.is_local(channel) or links.owned_elsewhere(channel)):
            await self._error(UNKNOWN_SID, "Session ID unknown")
            return
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            await self._error(BAD_REQUEST, "Bad request")
            return
        status, answer = await self._ask(channel, method, text)
        if status == 200:
            await self._text(200, answer)
        else:
            # 404: the session did not answer (gone); 413: too large; else 400.
            await self._error(UNKNOWN_SID if status == 404 else BAD_REQUEST, answer, 400 if status == 404 else status)

    async def _ask(self, channel: str, method: str, body: str) -> tuple[int, str]:
        """Hand the request to the session; its answer."""
        reply = await self.channel_layer.new_channel()
        answered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def answer(message: dict[str, Any]) -> None:
            if not answered.done():
                answered.set_result(message)

        links.register(reply, answer)
        remote = not links.is_local(channel)
        try:
            await links.send(
                self.channel_layer, channel, {"type": "eio.http", "method": method, "body": body, "reply": reply}
            )
            if remote:
                # The session answers at once, or says it holds the poll
                # (answered within a heartbeat); silence means it is gone.
                message = await asyncio.wait_for(self.channel_layer.receive(reply), REMOTE_ANSWER_SECONDS)
                if message["type"] == "eio.held":
                    wait = EngineSession.heartbeat_seconds() + REMOTE_MARGIN_SECONDS
                    message = await asyncio.wait_for(self.channel_layer.receive(reply), wait)
            else:
                message = await answered
        except TimeoutError:
            return 404, "Session ID unknown"
        finally:
            links.unregister(reply)
        return int(message["status"]), str(message["body"])

    async def _text(self, status: int, text: str) -> None:
        await self.send_response(
            status,
            text.encode("utf-8"),
            headers=[(b"Content-Type", b"text/plain; charset=UTF-8"), (b"Cache-Control", b"no-store"), *self.cors],
        )

    async def _error(self, code: int, message: str, status: int = 400) -> None:
        body = json.dumps({"code": code, "message": message}).encode("utf-8")
        await self.send_response(status, body, headers=[(b"Content-Type", b"application/json"), *self.cors])


class WebsocketConsumer(WithoutConnectionHops, AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    def __init__(self, session_class: type[EngineSession] = EngineSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session_class = session_class

    async def connect(self) -> None:
        self.session_channel: str | None = None
        query = _query(self.scope)
        if _check(query, WEBSOCKET) is not None:
            await self.close()
            return
        if not auth.origin_allowed(self.scope):
            # As the native protocol: a page of another origin may not open
            # the socket (403); it may still long-poll, without cookies.
            log.warning("refused a Socket.IO WebSocket handshake from an origin not allowed")
            await self.close()
            return
        links.register(self.channel_name, self._deliver)
        links.register_writer(self.channel_name, self.scope.get(SCOPE_KEY))
        await self.accept()
        if "sid" not in query:
            session = self.session_class(self.scope)
            handshake = await session.start(WEBSOCKET, self.channel_name)
            self.session_channel = session.channel_name
            await self.send(text_data=handshake)
            return
        channel = links.channel_of(query["sid"])
        if channel is None or not (links.is_local(channel) or links.owned_elsewhere(channel)):
            await self.close()
            return
        self.session_channel = channel
        await self._forward({"type": "eio.ws_open", "ws": self.channel_name})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session_channel is not None:
            data = text_data if text_data is not None else bytes_data
            await self._forward({"type": "eio.ws", "ws": self.channel_name, "data": data})

    async def disconnect(self, code: int) -> None:
        links.unregister(self.channel_name)
        if getattr(self, "session_channel", None) is not None:
            await self._forward({"type": "eio.ws_closed", "ws": self.channel_name})

    async def _forward(self, message: dict[str, Any]) -> None:
        assert self.session_channel is not None
        try:
            await links.send(self.channel_layer, self.session_channel, message)
        except Exception:
            log.exception("could not reach Engine.IO session %s", self.session_channel)
            await self.close()

    async def _deliver(self, message: dict[str, Any]) -> None:
        if message["type"] == "eio.out":
            for packet in message["packets"]:
                if isinstance(packet, str):
                    await self.send(text_data=packet)
                else:
                    await self.send(bytes_data=packet)
        elif message["type"] == "eio.close":
            self.session_channel = None
            await self.close()

    async def eio_out(self, message: dict[str, Any]) -> None:
        await self._deliver(message)

    async def eio_close(self, message: dict[str, Any]) -> None:
        await self._deliver(message)

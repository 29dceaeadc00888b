"""An Engine.IO v4 session: handshake, heartbeat, HTTP long-polling and
WebSocket transports, and the upgrade from one to the other.

The session is an object of the process that opened it, with a channel of
its own on the channel layer (``links``): what its transports receive comes
to it as messages (``eio.http``, ``eio.ws_open``, ``eio.ws``,
``eio.ws_closed``), from a consumer of this process or of another one, and
it answers to the transport's channel. Everything a session does runs in its
own task, one message at a time, as a Channels consumer's dispatch does;
only the heartbeat runs beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any

from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from realtime.mailbox import Mailbox
from realtime.transport import SharedFrame
from socketio_gateway import links
from socketio_gateway.packets import (
    CLOSE,
    MESSAGE,
    NOOP,
    OPEN,
    PING,
    PONG,
    UPGRADE,
    PacketError,
    decode_payload,
    decode_text,
    dumps,
    encode_payload,
)

log = logging.getLogger(__name__)

POLLING = "polling"
WEBSOCKET = "websocket"
OK = "ok"
CHECK_SECONDS = 0.1


class EngineSession:
    """One Engine.IO session. Subclasses handle its messages (``on_message``)
    and its end (``on_closed``)."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.layer: Any = get_channel_layer()
        self.channel_name = ""
        self.sid = ""
        self.transport = POLLING
        self.ws: str | None = None  # channel of the WebSocket transport
        self.probe: str | None = None  # channel of a WebSocket being upgraded to
        self.queue: list[str | bytes] = []  # for the next poll
        self.held: str | None = None  # reply channel of a GET waiting for packets
        self.closed = False
        self.inbox = Mailbox()
        self.interval = settings.LEDGERCORE_SOCKETIO_PING_INTERVAL_MS / 1000
        self.timeout = settings.LEDGERCORE_SOCKETIO_PING_TIMEOUT_MS / 1000
        self.max_payload = settings.LEDGERCORE_SOCKETIO_MAX_PAYLOAD
        self.pong_deadline: float | None = None
        self.ponged = asyncio.Event()
        self._check_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None

    @staticmethod
    def heartbeat_seconds() -> float:
        return (settings.LEDGERCORE_SOCKETIO_PING_INTERVAL_MS + settings.LEDGERCORE_SOCKETIO_PING_TIMEOUT_MS) / 1000

    # --- life ------------------------------------------------------------------

    async def start(self, transport: str, ws: str | None = None) -> str:
        """Open the session; returns its handshake packet."""
        self.channel_name = await self.layer.new_channel()
        self.sid = links.sign(self.channel_name)
        self.transport = transport
        self.ws = ws
        links.register(self.channel_name, self._deliver)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        self._heartbeat_task = loop.create_task(self._heartbeat())
        handshake = {
            "sid": self.sid,
            "upgrades": [WEBSOCKET] if transport == POLLING else [],
            "pingInterval": settings.LEDGERCORE_SOCKETIO_PING_INTERVAL_MS,
            "pingTimeout": settings.LEDGERCORE_SOCKETIO_PING_TIMEOUT_MS,
            "maxPayload": self.max_payload,
        }
        await self.on_open()
        return OPEN + dumps(handshake)

    def _deliver(self, message: dict[str, Any]) -> None:
        """A message from a transport of this process. A pong on the
        WebSocket is taken at once: a request being handled (which holds
        the session's task) does not make the heartbeat time out."""
        if message["type"] == "eio.ws" and message["data"] == PONG and message["ws"] == self.ws:
            self.pong_deadline = None
            self.ponged.set()
            return
        self.inbox.put_nowait(message)

    async def _run(self) -> None:
        receivers = [self.inbox.get, partial(self.layer.receive, self.channel_name)]
        try:
            await await_many_dispatch(receivers, self._dispatch)
        except StopConsumer:
            pass
        finally:
            if not self.closed:
                await asyncio.shield(self.close("server gone", notify=False))
            await asyncio.shield(self.on_closed())

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise StopConsumer
        if self._overdue():
            await self.close("ping timeout")
        try:
            handler = getattr(self, message["type"].replace(".", "_"), None)
            if handler is None or not message["type"].startswith("eio."):
                await self.dispatch_other(message)
            else:
                await handler(message)
        except Exception:
            log.exception("Engine.IO session %s failed on %s", self.sid, message.get("type"))
            await self.close("server error")
        if self.closed:
            raise StopConsumer

    async def dispatch_other(self, message: dict[str, Any]) -> None:
        """A channel-layer message that is not the transport's."""
        log.debug("Engine.IO session %s: no handler for %s", self.sid, message.get("type"))

    async def on_open(self) -> None:
        """The session has its sid and channel."""

    async def on_message(self, data: str | bytes) -> None:
        """An Engine.IO message packet from the client."""

    async def on_closed(self) -> None:
        """The session has ended (its task stops after this)."""

    async def close(self, reason: str, *, notify: bool = True, by_client: bool = False) -> None:
        """End the session: a held poll is answered (``6`` when the client
        closed, else the close packet), the WebSocket is closed, the sid is
        forgotten. Safe to call from any task, and more than once."""
        if self.closed:
            return
        self.closed = True
        log.debug("Engine.IO session %s closed: %s", self.sid, reason)
        links.unregister(self.channel_name)
        if self._heartbeat_task is not None and self._heartbeat_task is not asyncio.current_task():
            self._heartbeat_task.cancel()
        if notify:
            if self.held is not None:
                held, self.held = self.held, None
                await self._reply(held, 200, NOOP if by_client else CLOSE)
            for ws in (self.ws, self.probe):
                if ws is not None:
                    await self._to_ws(ws, {"type": "eio.close"})
        if self._task is not None and self._task is not asyncio.current_task():
            # Wake the session's task: it sees ``closed`` and stops.
            self.inbox.put_nowait({"type": "eio.closed"})

    # --- heartbeat ---------------------------------------------------------------

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        try:
            while not self.closed:
                await asyncio.sleep(max(due - loop.time(), 0))
                # The deadline counts from when the ping was due, not from
                # when a busy loop got round to it.
                self.pong_deadline = due + self.timeout
                self.ponged.clear()
                await self.write([PING])
                try:
                    await asyncio.wait_for(self.ponged.wait(), max(self.pong_deadline - loop.time(), 0))
                except TimeoutError:
                    await self.close("ping timeout")
                    return
                due = loop.time() + self.interval
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Engine.IO heartbeat of %s failed", self.sid)
            await self.close("server error")

    async def _upgrade_check(self) -> None:
        """While a WebSocket probes, a waiting poll is answered with a noop
        every CHECK_SECONDS (so the client can pause polling and upgrade)."""
        while self.probe is not None and not self.closed:
            await asyncio.sleep(CHECK_SECONDS)
            if self.held is not None and self.probe is not None and self.transport == POLLING:
                held, self.held = self.held, None
                await self._reply(held, 200, NOOP)

    def _overdue(self) -> bool:
        return self.pong_deadline is not None and asyncio.get_running_loop().time() >= self.pong_deadline

    # --- writing -----------------------------------------------------------------

    async def write(self, packets: list[str | bytes]) -> None:
        """Engine.IO packets to the client: text packets already encoded
        (type character first), bytes as binary messages."""
        if self.closed or not packets:
            return
        if self.transport == WEBSOCKET and self.ws is not None:
            await self._to_ws(self.ws, {"type": "eio.out", "packets": packets})
            return
        self.queue.extend(packets)
        if self.held is not None and not self.probe:
            held, self.held = self.held, None
            await self._flush_to(held)

    async def write_frame(self, frame: SharedFrame) -> None:
        """A message packet shared by many sessions (``frame.text``, its
        ``4`` included): written directly to a WebSocket of this process
        where the server allows it, else as ``write`` does."""
        writer = self.direct_writer()
        if writer is not None:
            writer.write(frame)
        elif not self.closed:
            await self.write([frame.text])

    def direct_writer(self) -> Any:
        """The writer of this session's WebSocket when it is open in this
        process and the server allows direct writes (``write_frame``),
        else None."""
        if self.closed or self.transport != WEBSOCKET or self.ws is None:
            return None
        return links.writer(self.ws)

    async def send_message(self, payloads: list[str | bytes]) -> None:
        """Engine.IO message packets: text gets its ``4``, bytes go as they are."""
        await self.write([MESSAGE + p if isinstance(p, str) else p for p in payloads])

    async def _flush_to(self, reply: str) -> None:
        body, self.queue = encode_payload(self.queue), []
        await self._reply(reply, 200, body)

    async def _reply(self, reply: str, status: int, body: str) -> None:
        await links.send(self.layer, reply, {"type": "eio.response", "status": status, "body": body})

    async def _to_ws(self, ws: str, message: dict[str, Any]) -> None:
        await links.send(self.layer, ws, message)

    # --- HTTP long-polling -------------------------------------------------------

    async def eio_http(self, message: dict[str, Any]) -> None:
        reply = message["reply"]
        if self.closed or self.transport != POLLING:
            await self._reply(reply, 400, "session is not polling")
            return
        if message["method"] == "GET":
            if self.held is not None:
                # Two polls at once: the protocol closes the session.
                await self._reply(reply, 400, "duplicate poll")
                await self.close("duplicate poll")
            elif self.queue:
                await self._flush_to(reply)
            else:
                self.held = reply
                if not links.is_local(reply):
                    # Another process waits: tell it the session is alive.
                    await self.layer.send(reply, {"type": "eio.held"})
            return
        body: str = message["body"]
        if len(body.encode("utf-8")) > self.max_payload:
            await self._reply(reply, 413, "payload too large")
            await self.close("payload too large")
            return
        try:
            packets = decode_payload(body)
        except PacketError:
            await self._reply(reply, 400, "invalid packet")
            await self.close("invalid packet")
            return
        await self._reply(reply, 200, OK)
        for kind, data in packets:
            await self._packet(kind, data)
            if self.closed:
                return

    async def _packet(self, kind: str, data: str | bytes) -> None:
        if kind == MESSAGE:
            await self.on_message(data)
        elif kind == PONG:
            self.pong_deadline = None
            self.ponged.set()
        elif kind == CLOSE:
            await self.close("client close", by_client=True)
        elif kind == PING and data == "probe":
            pass  # a probe belongs on the WebSocket being upgraded to
        elif kind in (UPGRADE, NOOP, PING):
            pass
        else:
            await self.close("unexpected packet")

    # --- WebSocket -----------------------------------------------------------------

    async def eio_ws_open(self, message: dict[str, Any]) -> None:
        """A WebSocket presents this sid to upgrade the session."""
        ws = message["ws"]
        if self.transport == WEBSOCKET or self.probe is not None:
            await self._to_ws(ws, {"type": "eio.close"})
            return
        self.probe = ws

    async def eio_ws_closed(self, message: dict[str, Any]) -> None:
        ws = message["ws"]
        if ws == self.probe:
            self.probe = None
        elif ws == self.ws:
            self.ws = None
            await self.close("transport close", notify=False)

    async def eio_ws(self, message: dict[str, Any]) -> None:
        ws, data = message["ws"], message["data"]
        if ws == self.probe:
            await self._probe_packet(ws, data)
            return
        if ws != self.ws:
            return
        if len(data) > self.max_payload:
            await self.close("payload too large")
            return
        if isinstance(data, bytes):
            await self.on_message(data)
            return
        try:
            kind, text = decode_text(data)
        except PacketError:
            await self.close("invalid packet")
            return
        await self._packet(kind, text)

    async def _probe_packet(self, ws: str, data: str | bytes) -> None:
        if data == PING + "probe":
            await self._to_ws(ws, {"type": "eio.out", "packets": [PONG + "probe"]})
            if self._check_task is None or self._check_task.done():
                self._check_task = asyncio.get_running_loop().create_task(self._upgrade_check())
        elif data == UPGRADE:
            self.transport, self.ws, self.probe = WEBSOCKET, ws, None
            if self.held is not None:
                # A client pauses polling before it upgrades: a poll still
                # waiting now came after the upgrade.
                held, self.held = self.held, None
                await self._reply(held, 400, "session upgraded")
            queued, self.queue = self.queue, []
            if queued:
                await self._to_ws(ws, {"type": "eio.out", "packets": queued})
        else:
            self.probe = None
            await self._to_ws(ws, {"type": "eio.close"})

    async def eio_closed(self, message: dict[str, Any]) -> None:
        """Sent by ``close`` to wake this task."""


def close_quietly(session: EngineSession) -> None:
    with contextlib.suppress(Exception):
        asyncio.get_running_loop().create_task(session.close("server shutdown"))

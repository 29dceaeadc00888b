"""Socket.IO v5 over an Engine.IO session: namespaces, events, acks and
binary attachments. What a namespace does is its ``NamespaceSocket``'s
business; the session finds one for a CONNECT through ``namespace_socket``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings

from realtime import ids
from socketio_gateway.engine import EngineSession
from socketio_gateway.packets import (
    ACK,
    BINARY_ACK,
    BINARY_EVENT,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    EVENT,
    PacketError,
    SioPacket,
    attach,
    decode_sio,
    encode_sio,
)

log = logging.getLogger(__name__)

INVALID_NAMESPACE = {"message": "Invalid namespace"}


class NamespaceSocket:
    """One client's connection to one namespace of a session."""

    def __init__(self, session: SocketIOSession, namespace: str) -> None:
        self.session = session
        self.namespace = namespace
        self.id = ids.random_hex(10)

    async def connect(self, auth: dict[str, Any]) -> None:
        """Answer the CONNECT: ``accept`` or ``refuse``."""
        await self.accept()

    async def event(self, args: list[Any], ack_id: int | None) -> None:
        """An EVENT: ``args[0]`` is its name."""

    async def disconnect(self, reason: str) -> None:
        """The socket left the namespace, or the session ended."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        """A channel-layer message for the session that is not Engine.IO's."""

    # --- to the client -----------------------------------------------------------

    async def accept(self, extra: dict[str, Any] | None = None) -> None:
        await self.session.send_message(encode_sio(CONNECT, self.namespace, {"sid": self.id, **(extra or {})}))

    async def refuse(self, data: dict[str, Any]) -> None:
        self.session.sockets.pop(self.namespace, None)
        await self.session.send_message(encode_sio(CONNECT_ERROR, self.namespace, data))

    async def emit(self, *args: Any) -> None:
        await self.session.send_message(encode_sio(EVENT, self.namespace, list(args)))

    async def ack(self, ack_id: int, args: list[Any]) -> None:
        await self.session.send_message(encode_sio(ACK, self.namespace, args, ack_id))

    async def emit_text(self, text: str) -> None:
        """An already encoded Socket.IO packet (``encode_sio``'s text)."""
        await self.session.send_message([text])


class SocketIOSession(EngineSession):
    """An Engine.IO session carrying Socket.IO packets."""

    def __init__(self, scope: dict[str, Any]) -> None:
        super().__init__(scope)
        self.sockets: dict[str, NamespaceSocket] = {}
        self.partial: SioPacket | None = None
        self.connected_once = False
        self._connect_timer: asyncio.Task[None] | None = None

    def namespace_socket(self, namespace: str) -> NamespaceSocket | None:
        """The socket for a CONNECT to ``namespace``, or None (refused as an
        invalid namespace)."""
        return None

    async def on_open(self) -> None:
        self._connect_timer = asyncio.get_running_loop().create_task(self._connect_timeout())

    async def _connect_timeout(self) -> None:
        await asyncio.sleep(settings.LEDGERCORE_SOCKETIO_CONNECT_TIMEOUT_MS / 1000)
        if not self.connected_once:
            await self.close("connect timeout")

    async def on_message(self, data: str | bytes) -> None:
        try:
            packet = self._assemble(data)
        except PacketError as exc:
            log.debug("Socket.IO session %s: %s", self.sid, exc)
            await self.close("parse error")
            return
        if packet is not None:
            await self._handle(packet)

    def _assemble(self, data: str | bytes) -> SioPacket | None:
        if isinstance(data, bytes):
            if self.partial is None:
                raise PacketError("unexpected binary attachment")
            attach(self.partial, data)
            if not self.partial.complete:
                return None
            packet, self.partial = self.partial, None
            return packet
        if self.partial is not None:
            raise PacketError("text packet while attachments were expected")
        packet = decode_sio(data)
        if packet.type in (BINARY_EVENT, BINARY_ACK) and not packet.complete:
            self.partial = packet
            return None
        return packet

    async def _handle(self, packet: SioPacket) -> None:
        namespace = packet.namespace
        if packet.type == CONNECT:
            if namespace in self.sockets:
                return
            socket = self.namespace_socket(namespace)
            if socket is None:
                await self.send_message(encode_sio(CONNECT_ERROR, namespace, INVALID_NAMESPACE))
                return
            self.connected_once = True
            self.sockets[namespace] = socket
            await socket.connect(packet.data if isinstance(packet.data, dict) else {})
        elif packet.type == DISCONNECT:
            left = self.sockets.pop(namespace, None)
            if left is not None:
                await left.disconnect("client namespace disconnect")
        elif packet.type in (EVENT, BINARY_EVENT):
            socket = self.sockets.get(namespace)
            if socket is not None:
                await socket.event(packet.data, packet.id)
        # ACK / BINARY_ACK: this server never asks the client for one.

    async def dispatch_other(self, message: dict[str, Any]) -> None:
        for socket in list(self.sockets.values()):
            await socket.dispatch(message)

    async def on_closed(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
        sockets, self.sockets = list(self.sockets.values()), {}
        for socket in sockets:
            try:
                await socket.disconnect("transport close")
            except Exception:
                log.exception("Socket.IO session %s: a namespace failed to disconnect", self.sid)


# ACK is named for readers of this module: the packet type a client's
# answer would have.
__all__ = ["ACK", "NamespaceSocket", "SocketIOSession"]

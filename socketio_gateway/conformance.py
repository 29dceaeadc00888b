"""The behaviour the official protocol test suites expect of the server
under test (``make conformance``; settings ``LEDGERCORE_SOCKETIO_CONFORMANCE``,
never on in production):

- Socket.IO, namespaces ``/`` and ``/custom``: on connection the server
  emits ``auth`` with the CONNECT payload; ``message`` is answered with
  ``message-back`` and the same arguments; ``message-with-ack`` is
  acknowledged with its arguments.
- Engine.IO (at ``/engine.io/``): every message is echoed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from socketio_gateway.engine import EngineSession
from socketio_gateway.sockets import NamespaceSocket, SocketIOSession

ECHO_NAMESPACES = frozenset({"/", "/custom"})


# The suites' client waits for one message per promise, and a WebSocket
# client that reads two frames in one chunk emits both before the test
# listens again: the CONNECT answer and the ``auth`` event are written this
# far apart, so that they reach it in two reads.
APART_SECONDS = 0.02


class EchoSocket(NamespaceSocket):
    async def connect(self, auth: dict[str, Any]) -> None:
        await self.accept()
        await asyncio.sleep(APART_SECONDS)
        await self.emit("auth", auth)

    async def event(self, args: list[Any], ack_id: int | None) -> None:
        name, rest = args[0], args[1:]
        if name == "message":
            await self.emit("message-back", *rest)
        elif name == "message-with-ack" and ack_id is not None:
            await self.ack(ack_id, rest)


class EchoSocketIOSession(SocketIOSession):
    def namespace_socket(self, namespace: str) -> NamespaceSocket | None:
        return EchoSocket(self, namespace) if namespace in ECHO_NAMESPACES else None


class EchoEngineSession(EngineSession):
    async def on_message(self, data: str | bytes) -> None:
        await self.send_message([data])

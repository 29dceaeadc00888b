"""The Socket.IO side of bench/realtime.py: subscribers that are Socket.IO
clients (Engine.IO over WebSocket, written on ``websockets`` so that client
cost is the same as the native path's), against LedgerCore's /socket.io/
and against the Node.js Socket.IO peer (bench/node_peers.py) doing the same
fan-out."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

ROOM = "application:app_bench"


async def recv(ws: Any, timeout: float = 60) -> str:
    """The next packet that is not the server's ping (answered)."""
    while True:
        packet = await asyncio.wait_for(ws.recv(), timeout)
        if packet == "2":
            await ws.send("3")
            continue
        return str(packet)


async def open_sockets(url: str, tokens: list[str], batch: int = 50, *, connected: bool = False) -> list[Any]:
    """One Socket.IO client per token, ``batch`` handshakes at a time, each
    open once the namespace is joined, or with ``connected`` once the
    server's ``connected`` event has come."""
    ready = '42["connected"' if connected else "40"

    async def one(token: str) -> Any:
        ws = await websockets.connect(f"{url}/socket.io/?EIO=4&transport=websocket", max_size=None, open_timeout=60)
        handshake = await recv(ws)
        assert handshake.startswith("0"), handshake
        await ws.send("40" + json.dumps({"token": token}))
        while not (packet := await recv(ws)).startswith(ready):
            if packet.startswith("44"):
                raise RuntimeError(f"refused: {packet}")
        return ws

    sockets: list[Any] = []
    for start in range(0, len(tokens), batch):
        sockets.extend(await asyncio.gather(*(one(t) for t in tokens[start : start + batch])))
    return sockets


async def subscribe(sockets: list[Any]) -> None:
    async def one(ws: Any) -> None:
        await ws.send('421["subscribe",' + json.dumps({"room": ROOM}) + "]")
        while not (packet := await recv(ws)).startswith("431"):
            pass
        if json.loads(packet[3:])[0]["event"] != "subscribed":
            raise RuntimeError(f"subscribe failed: {packet}")

    await asyncio.gather(*(one(ws) for ws in sockets))


def is_broadcast(packet: str, marker: str) -> bool:
    if not packet.startswith('42["application_broadcast"'):
        return False
    args = json.loads(packet[2:])
    return bool(args[1].get("data", {}).get("marker") == marker)

"""The Socket.IO side of bench/realtime.py: subscribers that are Socket.IO
clients (Engine.IO over WebSocket, written on ``websockets`` so that client
cost is the same as the native path's), against LedgerCore's /socket.io/
and against a Node.js Socket.IO 4.8 server (bench/node_socketio, installed
from npm into .cache) doing the same fan-out."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets

from devtools.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / ".cache" / "bench-node-socketio"
ROOM = "application:app_bench"


async def recv(ws: Any, timeout: float = 60) -> str:
    """The next packet that is not the server's ping (answered)."""
    while True:
        packet = await asyncio.wait_for(ws.recv(), timeout)
        if packet == "2":
            await ws.send("3")
            continue
        return str(packet)


async def open_sockets(url: str, tokens: list[str], batch: int = 50) -> list[Any]:
    async def one(token: str) -> Any:
        ws = await websockets.connect(f"{url}/socket.io/?EIO=4&transport=websocket", max_size=None, open_timeout=60)
        handshake = await recv(ws)
        assert handshake.startswith("0"), handshake
        await ws.send("40" + json.dumps({"token": token}))
        while not (packet := await recv(ws)).startswith("40"):
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


def start_node_server(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """The Node.js server on a free port; ``extra_env`` (e.g. JWT_SECRET,
    which makes it verify tokens) added to its environment."""
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "server.mjs"):
        (NODE_DIR / name).write_bytes((ROOT / "bench" / "node_socketio" / name).read_bytes())
    if not (NODE_DIR / "node_modules" / "socket.io" / "package.json").exists():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            env={**os.environ, "npm_config_cache": str(ROOT / ".cache" / "npm")},
        )
    port = free_port()
    process = subprocess.Popen(
        ["node", "server.mjs"], cwd=NODE_DIR, env={**os.environ, **(extra_env or {}), "PORT": str(port)}
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the Node.js Socket.IO server did not start")

"""Baseline for bench/realtime.py: a bare ASGI WebSocket app served by the same
daphne, with no authentication, registry, validation, throttles, channel
layer or presence. It answers ``ping`` with ``pong`` and, on ``fanout``,
sends one frame to every open connection from process memory."""

from __future__ import annotations

import json
import time
from typing import Any

_connections: dict[int, Any] = {}


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
        return
    if scope["type"] != "websocket":
        return
    key = id(send)
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            _connections[key] = send
            await send({"type": "websocket.send", "text": json.dumps({"event": "connected", "data": {}})})
        elif message["type"] == "websocket.receive":
            frame = json.loads(message.get("text") or "{}")
            if frame.get("event") == "ping":
                reply = {"event": "pong", "data": {"timestamp": time.time_ns() // 1_000_000}, "id": frame.get("id")}
                await send({"type": "websocket.send", "text": json.dumps(reply)})
            elif frame.get("event") == "fanout":
                text = json.dumps({"event": "application_broadcast", "data": frame.get("data", {})})
                for target in list(_connections.values()):
                    await target({"type": "websocket.send", "text": text})
        elif message["type"] == "websocket.disconnect":
            _connections.pop(key, None)
            return

"""A WebSocket client on a plain TCP socket, for clients that stop reading.

A library client reads in the background; this one reads only when asked,
so after its handshake and subscriptions it can stay silent while the
server writes to it (a small ``SO_RCVBUF`` keeps the kernel from absorbing
much on the client's side), and later read what arrived, close frame
included.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import time
from typing import Any

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


class ConnectionGone(Exception):
    """The server closed or reset the TCP connection."""


class RawWebSocket:
    def __init__(self, host: str, port: int, path: str, *, rcvbuf: int | None = 4096, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Set before connect, so that the advertised window is small too.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head[:200]!r}")

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise ConnectionGone(str(exc)) from None
        if not chunk:
            raise ConnectionGone("end of stream")
        self.buffer += chunk

    def recv_frame(self, timeout: float | None = 10.0) -> tuple[int, bytes]:
        """The next frame (opcode, payload); unfragmented frames only, as the
        server sends them. A timeout (TimeoutError) consumes nothing."""
        self.sock.settimeout(timeout)
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            self._fill()

    def _parse(self) -> tuple[int, bytes] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        length, start = data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return None
            (length,), start = struct.unpack("!H", data[2:4]), 4
        elif length == 127:
            if len(data) < 10:
                return None
            (length,), start = struct.unpack("!Q", data[2:10]), 10
        if len(data) < start + length:
            return None
        self.buffer = data[start + length :]
        return data[0] & 0x0F, data[start : start + length]

    def recv_event(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next text frame as JSON (pings are answered)."""
        while True:
            opcode, payload = self.recv_frame(timeout)
            if opcode == OP_TEXT:
                return dict(json.loads(payload))
            if opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise ConnectionGone(f"close frame {code} {payload[2:]!r}")

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_event(self, event: str, data: dict[str, Any], request_id: str | None = None) -> None:
        body: dict[str, Any] = {"event": event, "data": data}
        if request_id is not None:
            body["id"] = request_id
        self.send_frame(OP_TEXT, json.dumps(body).encode())

    def reply(self, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Read events until the one answering ``request_id``."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.recv_event(max(0.01, deadline - time.monotonic()))
            if event.get("id") == request_id:
                return event

    def read_until_close(self, timeout: float = 30.0) -> tuple[int | None, str, int]:
        """Read everything up to the server's close frame: (code, reason,
        text frames read before it). Answers the close as a client does."""
        deadline = time.monotonic() + timeout
        frames = 0
        while True:
            opcode, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if opcode == OP_TEXT:
                frames += 1
            elif opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                with contextlib.suppress(OSError):
                    self.send_frame(OP_CLOSE, payload[:2])
                return code, payload[2:].decode(errors="replace"), frames

    def close(self) -> None:
        self.sock.close()

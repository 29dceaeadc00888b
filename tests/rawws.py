"""A raw WebSocket client (RFC 6455 framing by hand, for frames no library
will send: invalid UTF-8 text, bursts ending in a close frame) and a daphne
subprocess of the embedded stack to point it at."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.servers import DaphneProcess, manage
from tests.wsclient import DEV_SECRET

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One client frame (masked, as RFC 6455 5.3 requires)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if length < 4096 else _mask(payload, mask)
    return head + mask + masked


def _mask(payload: bytes, mask: bytes) -> bytes:
    key = int.from_bytes((mask * (len(payload) // 4 + 1))[: len(payload)], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(len(payload), "big")


def close_frame(code: int = 1000, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


class RawSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    def connect(cls, port: int, token: str, timeout: float = 10.0) -> RawSocket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        raw = cls(sock)
        head = raw._read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return raw

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the TCP connection")
        self.buffer += chunk

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, payload: bytes | str) -> None:
        self.send(frame(TEXT, payload.encode() if isinstance(payload, str) else payload))

    def recv_frame(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        assert not second & 0x80, "server frames are not masked"
        return first & 0x0F, self._read(length)

    def recv_event(self) -> dict[str, Any]:
        """The next event (text frame); anything else is an error."""
        opcode, payload = self.recv_frame()
        assert opcode == TEXT, (opcode, payload)
        return json.loads(payload)  # type: ignore[no-any-return]

    def expect(self, event: str, limit: int = 50) -> dict[str, Any]:
        for _ in range(limit):
            got = self.recv_event()
            if got["event"] == event:
                return got
        raise AssertionError(f"no {event} in {limit} events")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def daphne(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    """daphne on a fresh SQLite database (migrated, not seeded: users are
    created by their first token), at the default frame limits."""
    var = tmp_path_factory.mktemp("daphne")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        {
            "LEDGERCORE_VAR_DIR": str(var),
            "LEDGERCORE_DEV_JWT_SECRET": DEV_SECRET,
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "DEBUG",
            # Room for the frames a test sends in a burst.
            "LEDGERCORE_THROTTLE_RATES": "connection=1000/s,user=1000/s",
        }
    )
    manage(env, "migrate", "--noinput", "-v", "0")
    server = DaphneProcess(env, Path(var) / "daphne.log").start()
    try:
        yield server
    finally:
        server.stop()

"""Connection state recovery for Socket.IO clients, on the native protocol's
offsets and room history (``realtime.history``).

Every event of a room with history reaches a Socket.IO client with one more
argument, last: a string offset, the event's room position
(``epoch:offset``; the same for every member, so one frame serves them all).
socket.io-client keeps the last one it received and, when it reconnects,
sends it in the CONNECT payload with the session's ``pid``. The session
kept the order of its last ``TRAIL_SIZE`` positioned events, so that the
last one the client received tells where it stood in every room; at its
end that trail is stored under the pid for
``LEDGERCORE_HISTORY_SECONDS``. A reconnecting client is thus given, for
each room, the position of the last event it really received, and the
rooms are joined again from there, the missed events read from their
history as a native ``subscribe`` with ``since`` would.

The store is Redis on the scaled stack (a client may reconnect to another
server process), this process's memory on the embedded stack.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from realtime import redis as lcredis
from realtime.history import Position

TRAIL_SIZE = 1000


@dataclass
class Trail:
    """The positions a session's offsets stand for."""

    seq: int = 0
    # seq -> (room, epoch, offset), the latest TRAIL_SIZE
    entries: deque[tuple[int, str, str, int]] = field(default_factory=lambda: deque(maxlen=TRAIL_SIZE))
    # What the entries that left the trail said, per room, and the last seq among them.
    floor: dict[str, tuple[str, int]] = field(default_factory=dict)
    floor_seq: int = 0

    def record(self, room: str, epoch: str, offset: int) -> None:
        self.seq += 1
        if len(self.entries) == self.entries.maxlen:
            old_seq, old_room, old_epoch, old_offset = self.entries[0]
            self.floor[old_room] = (old_epoch, old_offset)
            self.floor_seq = old_seq
        self.entries.append((self.seq, room, epoch, offset))

    def positions(self, last: tuple[str, int]) -> dict[str, Position] | None:
        """Each room's position once the client has received the event at
        ``last`` (epoch, offset: its recovery offset); None when the trail
        no longer tells."""
        received = next((seq for seq, _, e, o in reversed(self.entries) if (e, o) == last), None)
        if received is None:
            return None
        found = {room: Position(epoch, offset) for room, (epoch, offset) in self.floor.items()}
        for seq, room, epoch, offset in self.entries:
            if seq > received:
                break
            found[room] = Position(epoch, offset)
        return found

    def dump(self, user_id: str, rooms: list[str]) -> str:
        return json.dumps(
            {
                "user": user_id,
                "rooms": rooms,
                "seq": self.seq,
                "entries": list(self.entries),
                "floor": self.floor,
                "floorSeq": self.floor_seq,
            }
        )


@dataclass(frozen=True)
class Saved:
    user_id: str
    rooms: list[str]
    trail: Trail


def _load(text: str) -> Saved:
    body = json.loads(text)
    trail = Trail(
        seq=body["seq"], floor={k: (v[0], v[1]) for k, v in body["floor"].items()}, floor_seq=body["floorSeq"]
    )
    trail.entries.extend((e[0], e[1], e[2], e[3]) for e in body["entries"])
    return Saved(body["user"], list(body["rooms"]), trail)


_memory: dict[str, tuple[float, str]] = {}


def _ttl() -> int:
    return max(int(settings.LEDGERCORE_HISTORY_SECONDS), 1)


async def save(pid: str, user_id: str, rooms: list[str], trail: Trail) -> None:
    text = trail.dump(user_id, rooms)
    if lcredis.enabled():
        await lcredis.command("SET", lcredis.key("sio", "pid", pid), text, "EX", _ttl())
        return
    now = time.monotonic()
    for stale in [k for k, (expires, _) in _memory.items() if expires < now]:
        del _memory[stale]
    _memory[pid] = (now + _ttl(), text)


async def take(pid: Any) -> Saved | None:
    """The state saved under ``pid`` (removed: a session is recovered once)."""
    if not isinstance(pid, str) or not 0 < len(pid) <= 64:
        return None
    if lcredis.enabled():
        text = await lcredis.command("GETDEL", lcredis.key("sio", "pid", pid))
    else:
        expires, text = _memory.pop(pid, (0.0, None))
        if expires < time.monotonic():
            text = None
    return _load(text) if text else None


def token(epoch: str, offset: int) -> str:
    """The recovery offset a room event carries: its room position."""
    return f"{epoch}:{offset}"


def parse_offset(value: Any) -> tuple[str, int] | None:
    if not isinstance(value, str) or len(value) > 100:
        return None
    epoch, _, offset = value.rpartition(":")
    if not epoch or not offset.isascii() or not offset.isdigit() or len(offset) > 18:
        return None
    return epoch, int(offset)

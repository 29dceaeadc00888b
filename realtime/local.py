"""Process-local fan-out: the connections of THIS process in a room.

Rooms whose content is computed in every server process from a shared
stream (live charts: each process builds candles from the same trades) must
not be broadcast through the channel layer, or every subscriber would get
one copy per process. Such a room's publisher sends to its process's own
members here: one encoded frame per room, written to each local socket.

The frame is framed once for all members where the server allows it
(``realtime.transport``): a member's ``write_frame`` writes it directly and
returns True, or returns False and the frame goes through its ASGI send.

Each member keeps a position (e.g. the timestamp of the last bar it got): a
frame with an older position is not sent to it, so a member that joined with
a snapshot never receives anything older than that snapshot. A member whose
socket lags keeps only the latest frames of the room for a while
(``realtime.backpressure``): positions never go back there either.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from realtime.transport import SCOPE_KEY, SharedFrame, is_closed_error

log = logging.getLogger(__name__)

YIELD_EVERY = 64


class Member(Protocol):
    def write_frame(self, frame: SharedFrame, room: str | None = None, position: int | None = None) -> bool: ...

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None: ...


class LocalRooms:
    def __init__(self) -> None:
        self._rooms: dict[str, dict[Member, int | None]] = {}

    def add(self, room: str, member: Member, position: int | None = None) -> None:
        self._rooms.setdefault(room, {})[member] = position

    def discard(self, room: str, member: Member) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self._rooms[room]
        # Updates of the room held for a lagging member are not sent after it left.
        writer = getattr(member, "scope", {}).get(SCOPE_KEY)
        if writer is not None:
            writer.outbound.pending.pop(room, None)

    def count(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def rooms(self) -> list[str]:
        return list(self._rooms)

    async def send(self, room: str, text: str, position: int | None = None) -> int:
        """Send ``text`` to the room's local members whose position is not
        newer than ``position``; returns how many got it."""
        members = self._rooms.get(room)
        if not members:
            return 0
        frame = SharedFrame(text)
        sent = 0
        for index, (member, seen) in enumerate(list(members.items())):
            if index and index % YIELD_EVERY == 0:
                # Let the event loop write out what is buffered so far: the
                # first subscribers get the frame while the rest are queued.
                await asyncio.sleep(0)
            if position is not None:
                if seen is not None and position < seen:
                    continue
                members[member] = position
            try:
                if not member.write_frame(frame, room, position):
                    await member.send(text_data=text)
            except Exception as exc:
                # A closing socket, or a failing member, must not stop the others.
                if is_closed_error(exc):
                    log.debug("dropped a frame of %s for a closing socket: %s", room, exc)
                else:
                    log.exception("failed to send a frame of %s to a member", room)
                continue
            sent += 1
        return sent


local_rooms = LocalRooms()

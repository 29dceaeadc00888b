"""Per-connection room streams: each joined room's events reach the socket
in offset order, exactly once, with nothing missing.

Events of a room are numbered where they are published (realtime.history)
but can reach a connection out of order (two processes, or two tasks,
publishing at the same moment) or not at all (a channel-layer queue that was
full). Each connection keeps, per room, the last offset it delivered:

- the next offset is sent at once, with whatever was held back behind it;
- an offset already delivered (or older than the join) is dropped;
- a later offset is held back. If what is missing has not arrived within
  ``GAP_WAIT_SECONDS`` it is read from the room's history (one read shared
  by every connection of the process missing the same events); if the
  history no longer has it, the client gets ``room_resync`` (refetch) and
  the stream continues.

An event of a new epoch (the history was lost) is announced with
``room_resync`` too. Live events are handed over by the process's receiver
(realtime.fanout; queued behind the lock while it is held); the gap timer
runs beside it, so every send of a stream happens under the
connection's ``lock`` (uncontended but for a firing timer), and so does a
subscription's answer and replay.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from realtime import history
from realtime.history import Position, Recovery, framed
from realtime.protocol import encode
from realtime.transport import SharedFrame

if TYPE_CHECKING:
    from realtime.consumers import RealtimeConsumer

log = logging.getLogger(__name__)

GAP_WAIT_SECONDS = 0.2
# A gap whose history cannot be read (Redis not answering) after this many
# attempts is given up: room_resync, and the held-back events go out.
GAP_READ_ATTEMPTS = 3
RESYNC_EVENT = "room_resync"


class _Stream:
    __slots__ = ("attempts", "epoch", "pending", "position", "retired", "timer")

    def __init__(self, epoch: str, position: int) -> None:
        self.epoch = epoch
        self.position = position
        # offset -> (text, skip_user): events that came before their predecessors
        self.pending: dict[int, tuple[str, str | None]] = {}
        self.timer: asyncio.Task[None] | None = None
        self.retired: set[str] = set()
        self.attempts = 0


class RoomStreams:
    def __init__(self, connection: RealtimeConsumer) -> None:
        self.connection = connection
        self._streams: dict[str, _Stream] = {}
        self.lock = asyncio.Lock()

    # --- joining and leaving ---------------------------------------------------

    async def open(self, room: str, since: Position | None) -> Recovery:
        """The room's position for a connection that has just joined its
        group (or was in it already), and what it missed since ``since``."""
        stream = self._streams.get(room)
        if stream is None:
            recovery = await history.store().read(room, since)
            self._streams[room] = _Stream(recovery.epoch, recovery.top)
            return recovery
        # Already joined: the connection's stream has delivered up to its
        # position; later events are on their way to it.
        if since is None:
            return Recovery(stream.epoch, stream.position)
        recovery = await history.store().read(room, since, upto=stream.position)
        if recovery.epoch != stream.epoch:
            return Recovery(stream.epoch, stream.position, recovered=False)
        recovery.top = stream.position
        return recovery

    async def replay(self, room: str, recovery: Recovery) -> None:
        """Send the events a recovery found (after the answer that says so)."""
        user = self.connection.user_id
        for entry in recovery.entries:
            if entry.skip_user != user:
                await self.connection.send(text_data=framed(entry.base, room, entry.offset, recovery.epoch))

    def forget(self, room: str) -> None:
        stream = self._streams.pop(room, None)
        if stream is not None and stream.timer is not None:
            stream.timer.cancel()

    def close(self) -> None:
        for room in list(self._streams):
            self.forget(room)

    # --- live events -------------------------------------------------------------

    async def deliver(self, message: dict[str, Any]) -> None:
        """A ``room.event`` for a room the connection is in."""
        async with self.lock:
            await self._deliver(message)

    async def _deliver(self, message: dict[str, Any]) -> None:
        offset = message.get("offset")
        stream = self._streams.get(message["room"])
        skip_user = message.get("skip_user")
        if offset is None or stream is None:
            # A room without history (or not tracked): as it comes.
            if skip_user != self.connection.user_id:
                await self._send(message["text"], message.get("frame"))
            return
        room = message["room"]
        epoch = message["epoch"]
        if epoch != stream.epoch:
            if epoch in stream.retired:
                return  # an old epoch's straggler; the client was told to refetch
            # The room's history was lost (Redis restarted without it, say):
            # the client refetches, and the new epoch is delivered from its
            # start, its first events read from history if this connection
            # missed them (its group may have been re-added late).
            await self._resync(room, stream, "epoch_changed", epoch, 0)
        if offset <= stream.position:
            return
        if offset == stream.position + 1:
            await self._emit(stream, offset, message["text"], skip_user, message.get("frame"))
            if stream.pending:
                await self._drain(room, stream)
            return
        stream.pending[offset] = (message["text"], skip_user)
        self._arm(room, stream)

    def deliver_now(self, message: dict[str, Any]) -> bool | None:
        """A ``room.event`` for a room the connection is in, delivered
        without waiting when nothing stands in its way: the room's next
        offset (or an offset already delivered), nothing held back, no one
        holding the lock, and a socket that takes shared frames directly
        (``writes_now``). True when the frame was written, False when
        nothing was to be written (a duplicate, or the sender's own event),
        None when ``deliver`` must take it. The frame is not counted in the
        metrics: the caller counts what it wrote."""
        frame = message.get("frame")
        connection = self.connection
        if frame is None or self.lock.locked() or not connection.writes_now():
            return None
        offset = message.get("offset")
        stream = self._streams.get(message["room"])
        if offset is not None and stream is not None:
            if message["epoch"] != stream.epoch or offset > stream.position + 1 or stream.pending:
                return None
            if offset <= stream.position:
                return False
            stream.position = offset
        if message.get("skip_user") == connection.user_id:
            return False
        return connection.write_now(message["text"], frame)

    async def _fill(self, room: str, stream: _Stream) -> None:
        """The gap timer fired: read what is still missing from the history."""
        stream.timer = None
        if not stream.pending:
            return
        first = min(stream.pending)
        if first > stream.position + 1:
            since = Position(stream.epoch, stream.position)
            try:
                recovery = await _shared_read(room, since, first - 1)
            except Exception:
                stream.attempts += 1
                if stream.attempts < GAP_READ_ATTEMPTS:
                    log.warning("could not read the history of %s to fill a gap; retrying", room, exc_info=True)
                    self._arm(room, stream)
                    return
                log.exception("could not read the history of %s to fill a gap; giving up", room)
                recovery = Recovery(stream.epoch, stream.position, recovered=False)
            stream.attempts = 0
            if self._streams.get(room) is not stream:
                return  # left meanwhile
            if recovery.recovered and recovery.epoch == stream.epoch:
                for entry in recovery.entries:
                    if entry.offset == stream.position + 1:
                        await self._emit(
                            stream, entry.offset, framed(entry.base, room, entry.offset, stream.epoch), entry.skip_user
                        )
            if first > stream.position + 1:
                await self._resync(room, stream, "history_gap", stream.epoch, first - 1)
        await self._drain(room, stream)

    # --- internals ---------------------------------------------------------------

    async def _emit(
        self, stream: _Stream, offset: int, text: str, skip_user: str | None, frame: SharedFrame | None = None
    ) -> None:
        stream.position = offset
        if skip_user != self.connection.user_id:
            await self._send(text, frame)

    async def _send(self, text: str, frame: SharedFrame | None) -> None:
        """A live event's text; its ``frame`` (shared by the room's local
        members: realtime.fanout) is written directly where the server
        allows it, within the connection's buffer limits."""
        if frame is None or not self.connection.write_frame(frame):
            await self.connection.send(text_data=text)

    async def _drain(self, room: str, stream: _Stream) -> None:
        pending = stream.pending
        while pending:
            item = pending.pop(stream.position + 1, None)
            if item is None:
                break
            await self._emit(stream, stream.position + 1, *item)
        for offset in [offset for offset in pending if offset <= stream.position]:
            del pending[offset]
        if pending:
            self._arm(room, stream)
        elif stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None

    async def _resync(self, room: str, stream: _Stream, reason: str, epoch: str, position: int) -> None:
        """Tell the client that events of the room were lost: it refetches,
        and the stream continues after ``position``."""
        if epoch != stream.epoch:
            stream.retired = {stream.epoch}
            stream.epoch = epoch
            stream.pending.clear()
            if stream.timer is not None:
                stream.timer.cancel()
                stream.timer = None
        stream.position = position
        log.info("room %s: %s; the client is told to refetch (sid %s)", room, reason, self.connection.sid)
        text = framed(encode(RESYNC_EVENT, {"room": room, "reason": reason}), room, position, epoch, False)
        await self.connection.send(text_data=text)

    def _arm(self, room: str, stream: _Stream) -> None:
        if stream.timer is None or stream.timer.done():
            stream.timer = asyncio.get_running_loop().create_task(self._wake(room))

    async def _wake(self, room: str) -> None:
        await asyncio.sleep(GAP_WAIT_SECONDS)
        async with self.lock:
            stream = self._streams.get(room)
            if stream is not None and stream.timer is asyncio.current_task():
                try:
                    await self._fill(room, stream)
                except Exception:
                    # A send to a closing socket, say: the connection is going.
                    log.debug("gap fill of %s failed (sid %s)", room, self.connection.sid, exc_info=True)


_reads: dict[tuple[str, str, int, int], asyncio.Future[Recovery]] = {}


async def _shared_read(room: str, since: Position, upto: int) -> Recovery:
    """One history read for every connection of this process that misses
    the same events of a room at the same moment."""
    key = (room, since.epoch, since.offset, upto)
    future = _reads.get(key)
    if future is None or future.get_loop() is not asyncio.get_running_loop():
        task = asyncio.ensure_future(history.store().read(room, since, upto))
        _reads[key] = task

        def done(finished: asyncio.Future[Recovery], key: tuple[str, str, int, int] = key) -> None:
            if _reads.get(key) is finished:
                del _reads[key]

        task.add_done_callback(done)
        future = task
    return await asyncio.shield(future)


def answer(text: str, room: str, recovery: Recovery | None, asked: bool) -> str:
    """An encoded answer (``subscribed``, ``connected``) with the room's
    position, and ``recovered`` when the client asked to recover."""
    if recovery is None:
        if not asked:
            return text
        # A room without history: nothing can be recovered.
        return f'{text[:-1]},"room":{json.dumps(room, ensure_ascii=False)},"recovered":false}}'
    if asked and recovery.recovered is None:
        recovery.recovered = False
    return framed(text, room, recovery.top, recovery.epoch, recovery.recovered if asked else None)

"""Room fan-out once per process, not once per connection.

A room event (``realtime.push.broadcast``) goes to the room's channel-layer
group; so do several events of one room published together
(``broadcast_many``: one message, unpacked here into its events in order).
The connections of a server process are not members of that group
themselves: the process is, once, with one process channel, from its first
local connection in the room to its last (a reference count per room, its
group add and discard serialised per room so that a join and a leave racing
each other leave the process in the group exactly while it has members). The
process's receiver takes each event off that channel and hands it to the
room's local members in one loop:

- one ``SharedFrame`` per event for all of them (framed once where the server
  allows it: ``realtime.transport``), each member writing it within its own
  outbound buffer limits (``realtime.backpressure``) or through its ASGI send;
- each member keeps its own rules: ``skip_user`` and its room stream (offset
  order, exactly once, gap fill and resync: ``realtime.streams``);
- a member busy under its stream lock (answering a subscription, filling a
  gap from the history) gets the event queued behind what it already waits
  for, in order, so that it never holds up the rest of the room;
- so does a member whose socket is stalled (its client reads less than it
  is sent: ``realtime.backpressure``): what waits for it is written once
  the socket drains, and counts against its buffer limits until then, so
  that a client that never reads costs the room a list append per event
  until it is closed as a slow consumer;
- a closing or failing member does not stop the loop, and the loop yields
  every ``YIELD_EVERY`` members.

Events are handed over beside the connection's own handlers, not behind
them as a consumer's channel messages would be. What must come before a
room's events holds the connection's stream lock: a subscription's answer
and replay, and the whole of ``connect`` (``connected``, what it recovers
and what the connect hooks send, such as the balance).

Connections keep their own channel for what is addressed to them alone
(``lifecycle.close``). A drain closes a connection behind the room events
this process received before it (``close_after_events``): the close is a
marker on the process channel, after the events already on it, and then
goes through the connection's own channel, after what waits there. On the scaled stack the layer remembers the process
channel's memberships like any other and re-adds them after a Redis outage
(``realtime.redis_layer``). Presence (``realtime.presence``) is separate: it
still records each connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from channels.layers import get_channel_layer

from realtime import metrics
from realtime.push import ROOM_EVENT, ROOM_EVENTS, unpack
from realtime.redis import is_outage
from realtime.rooms import group_name
from realtime.transport import SharedFrame, is_closed_error

log = logging.getLogger(__name__)

# The close of a draining connection, queued on the process channel.
CLOSE_MARKER = "fanout.close"
YIELD_EVERY = 64
# Events queued for a member whose stream is busy; past this the oldest are
# dropped, as a full channel-layer queue would (the stream refills a gap
# from the room's history, or tells the client to refetch). A stalled
# member's backlog is bounded by its buffer limits instead (it is closed
# over them), and by STALLED_BACKLOG_LIMIT in any case.
BACKLOG_LIMIT = 1000
STALLED_BACKLOG_LIMIT = 65536
# A group membership is added again after this long, by a later join or by
# the process's refresher, so that a room with members never outlives the
# layer's group expiry (a day), even when no one joins it for days.
REFRESH_SECONDS = 3600.0
# How often the refresher looks for memberships to add again.
REFRESH_EVERY_SECONDS = REFRESH_SECONDS / 4


class Member(Protocol):
    """A connection as the fan-out sees it (``RealtimeConsumer``)."""

    @property
    def streams(self) -> Any: ...

    @property
    def channel_name(self) -> str: ...

    @property
    def channel_layer(self) -> Any: ...

    async def room_event(self, message: dict[str, Any]) -> None: ...

    def take_event(self, message: dict[str, Any]) -> bool | None: ...

    def stalled(self) -> bool: ...

    async def drained(self, held: Callable[[], tuple[int, int]]) -> bool: ...


class _RoomLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class ProcessFanout:
    def __init__(self) -> None:
        self.channel: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._start_lock: asyncio.Lock | None = None
        # room -> its local members (a dict as an ordered set)
        self._members: dict[str, dict[Member, None]] = {}
        # room -> when the process channel was last added to its group
        self._joined: dict[str, float] = {}
        self._locks: dict[str, _RoomLock] = {}
        self._backlogs: dict[Member, _Backlog] = {}
        self._drains: set[asyncio.Task[None]] = set()
        # marker key -> (member, its close message), sent by close_after_events
        self._closing: dict[str, tuple[Member, dict[str, Any]]] = {}
        self._closes = 0
        self.events = 0

    # --- membership ----------------------------------------------------------

    async def join(self, room: str, member: Member) -> None:
        """Count ``member`` in the room; returns once the process channel is
        in the room's group (every later event reaches the member). Raises
        what the layer raises (``RedisUnavailable``: the layer re-adds the
        membership when Redis returns unless ``leave`` is called)."""
        layer = await self._ensure_started()
        self._members.setdefault(room, {})[member] = None
        async with self._room_lock(room):
            if member not in self._members.get(room, ()):
                return  # left meanwhile
            joined = self._joined.get(room)
            if joined is not None and time.monotonic() - joined < REFRESH_SECONDS:
                return
            # Recorded first: on an outage the layer keeps the membership
            # and re-adds it, and the last leave discards it.
            self._joined[room] = time.monotonic()
            try:
                await layer.group_add(group_name(room), self.channel)
            except Exception as exc:
                # On an outage the layer keeps the membership to re-add it.
                if joined is None and not is_outage(exc):
                    self._joined.pop(room, None)
                raise

    async def leave(self, room: str, member: Member) -> None:
        """Forget ``member`` in the room; the process leaves the group with
        its last local member."""
        members = self._members.get(room)
        if members is None or members.pop(member, False) is False:
            return
        if members:
            return
        del self._members[room]
        layer = get_channel_layer()
        async with self._room_lock(room):
            if self._members.get(room) or room not in self._joined:
                return  # joined again meanwhile, or never added
            del self._joined[room]
            await layer.group_discard(group_name(room), self.channel)

    def count(self, room: str) -> int:
        return len(self._members.get(room, ()))

    def rooms(self) -> list[str]:
        return list(self._joined)

    # --- delivery --------------------------------------------------------------

    async def deliver(self, message: dict[str, Any]) -> int:
        """Hand a room event to the room's local members; returns how many
        were handed it."""
        members = self._members.get(message["room"])
        if not members:
            return 0
        self.events += 1
        local = {**message, "frame": SharedFrame(message["text"])}
        handed = written = 0
        backlogs = self._backlogs
        for index, member in enumerate(list(members)):
            if index and index % YIELD_EVERY == 0:
                # Let the loop write out what is buffered so far.
                await asyncio.sleep(0)
            if member in backlogs or member.streams.lock.locked() or member.stalled():
                self._queue(member, local)
                handed += 1
                continue
            # Most members take the event at once, without a task switch;
            # the others through their room stream's lock.
            try:
                taken = member.take_event(local)
            except Exception as exc:  # noqa: BLE001 - logged; the others still get it
                _failed(exc, local["room"])
                continue
            if taken is None:
                if await _hand(member, local):
                    handed += 1
                continue
            handed += 1
            written += taken
        if written:
            metrics.count_out(local["text"], written)
        return handed

    async def close_after_events(self, member: Member, close: dict[str, Any]) -> None:
        """Send ``close`` (a message for the connection's own channel) to
        ``member`` after the room events already on the process channel have
        been handed to it. Raises what the layer raises."""
        loop = asyncio.get_running_loop()
        if self.channel is None or self._loop is not loop:
            await member.channel_layer.send(member.channel_name, close)
            return
        self._closes += 1
        key = str(self._closes)
        self._closing[key] = (member, close)
        try:
            await get_channel_layer().send(self.channel, {"type": CLOSE_MARKER, "key": key})
        except BaseException:
            self._closing.pop(key, None)
            raise

    async def _closed_marker(self, key: str) -> None:
        entry = self._closing.pop(key, None)
        if entry is None:
            return
        member, close = entry
        if member in self._backlogs or member.streams.lock.locked():
            self._queue(member, {"type": CLOSE_MARKER, "close": close})
        else:
            await _send_close(member, close)

    def _queue(self, member: Member, message: dict[str, Any]) -> None:
        backlog = self._backlogs.get(member)
        if backlog is None:
            backlog = self._backlogs[member] = _Backlog()
            task = asyncio.get_running_loop().create_task(self._drain(member, backlog))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        backlog.append(message)
        if len(backlog.items) > BACKLOG_LIMIT and (len(backlog.items) > STALLED_BACKLOG_LIMIT or not member.stalled()):
            backlog.popleft()

    async def _drain(self, member: Member, backlog: _Backlog) -> None:
        try:
            while backlog.items:
                if member.stalled() and not await member.drained(backlog.held):
                    return  # closed: what waited for it goes with it
                # What waits now, in order (``drained`` found it within the
                # member's limits); what arrives meanwhile waits its turn.
                for _ in range(len(backlog.items)):
                    message = backlog.popleft()
                    if message.get("type") == CLOSE_MARKER:
                        await _send_close(member, message["close"])
                    else:
                        await _hand(member, message)
        finally:
            if self._backlogs.get(member) is backlog:
                del self._backlogs[member]

    # --- the receiver ------------------------------------------------------------

    async def _ensure_started(self) -> Any:
        layer = get_channel_layer()
        loop = asyncio.get_running_loop()
        if (
            self._loop is loop
            and self._receiver is not None
            and not self._receiver.done()
            and self._refresher is not None
            and not self._refresher.done()
        ):
            return layer
        if self._start_lock is None or self._loop is not loop:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._loop is not loop:
                # Another event loop (a new server in the same process, as
                # tests start): nothing of the old one is valid here.
                self._members.clear()
                self._joined.clear()
                self._locks.clear()
                self._backlogs.clear()
                self._closing.clear()
                self.channel = await layer.new_channel()
                self._loop = loop
                self._receiver = self._refresher = None  # tasks of the old loop
            assert self.channel is not None
            if self._receiver is None or self._receiver.done():
                self._receiver = loop.create_task(self._receive(layer, self.channel))
            if self._refresher is None or self._refresher.done():
                self._refresher = loop.create_task(self._refresh_periodically())
        return layer

    async def refresh(self) -> int:
        """Add the process channel again to the group of each room it joined
        REFRESH_SECONDS ago or more and still has members in (the layer
        ends a membership after its group expiry); returns how many."""
        layer = get_channel_layer()
        refreshed = 0
        for room in list(self._joined):
            async with self._room_lock(room):
                joined = self._joined.get(room)
                if joined is None or not self._members.get(room) or time.monotonic() - joined < REFRESH_SECONDS:
                    continue
                self._joined[room] = time.monotonic()
                await layer.group_add(group_name(room), self.channel)
                refreshed += 1
        return refreshed

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY_SECONDS)
            try:
                await self.refresh()
            except Exception:
                # On an outage the layer keeps the memberships and re-adds them.
                log.warning(
                    "room fan-out: group memberships not refreshed; next try in %.0f s",
                    REFRESH_EVERY_SECONDS,
                    exc_info=True,
                )

    async def _receive(self, layer: Any, channel: str) -> None:
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("room fan-out: receive failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if message.get("type") == CLOSE_MARKER:
                await self._closed_marker(message["key"])
                continue
            kind = message.get("type")
            if kind == ROOM_EVENTS:
                # Several events of a room in one message: each handed over
                # as if it had come alone, in order.
                for event in unpack(message):
                    await self._deliver_one(event)
                continue
            if kind != ROOM_EVENT:
                log.warning("room fan-out: unexpected message type %r", kind)
                continue
            await self._deliver_one(message)

    async def _deliver_one(self, message: dict[str, Any]) -> None:
        try:
            await self.deliver(message)
        except Exception:
            log.exception("room fan-out: an event of %s was not delivered", message.get("room"))

    def _room_lock(self, room: str) -> _Held:
        held = self._locks.get(room)
        if held is None:
            held = self._locks[room] = _RoomLock()
        return _Held(self._locks, room, held)


class _Backlog:
    """What waits for one member, in order, and its size in bytes."""

    __slots__ = ("bytes", "items")

    def __init__(self) -> None:
        self.items: deque[dict[str, Any]] = deque()
        self.bytes = 0

    def append(self, message: dict[str, Any]) -> None:
        self.items.append(message)
        self.bytes += len(message.get("text", ""))

    def popleft(self) -> dict[str, Any]:
        message = self.items.popleft()
        self.bytes -= len(message.get("text", ""))
        return message

    def held(self) -> tuple[int, int]:
        return len(self.items), self.bytes


class _Held:
    """``async with`` a room's lock; the lock is forgotten once no one
    holds or waits for it."""

    __slots__ = ("held", "locks", "room")

    def __init__(self, locks: dict[str, _RoomLock], room: str, held: _RoomLock) -> None:
        self.locks = locks
        self.room = room
        self.held = held

    async def __aenter__(self) -> None:
        self.held.users += 1
        try:
            await self.held.lock.acquire()
        except BaseException:
            self._done()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self.held.lock.release()
        self._done()

    def _done(self) -> None:
        self.held.users -= 1
        if self.held.users == 0 and self.locks.get(self.room) is self.held:
            del self.locks[self.room]


async def _hand(member: Member, message: dict[str, Any]) -> bool:
    try:
        await member.room_event(message)
    except Exception as exc:  # noqa: BLE001 - logged; the others still get it
        _failed(exc, message["room"])
        return False
    return True


def _failed(exc: Exception, room: str) -> None:
    """A closing socket, or a failing member, must not stop the others."""
    if is_closed_error(exc):
        log.debug("dropped an event of %s for a closing socket: %s", room, exc)
    else:
        log.error("failed to deliver an event of %s to a member", room, exc_info=exc)


async def _send_close(member: Member, close: dict[str, Any]) -> None:
    try:
        await member.channel_layer.send(member.channel_name, close)
    except Exception:
        # The drain closes it directly once the close is overdue.
        log.debug("could not queue the close of a connection", exc_info=True)


fanout = ProcessFanout()

"""Who is in which room: exact connection counts and per-user presence.

Channel-layer groups cannot be counted, so membership is kept here: in
process on the embedded stack, in Redis on the scaled stack where every
server process shares it. Each Redis-stack process refreshes a heartbeat;
any process sweeps the memberships of processes whose heartbeat stopped, so
a crashed process's connections leave their rooms within
LEDGERCORE_PRESENCE_TIMEOUT_SECONDS plus one sweep interval.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from realtime import presence_lua as lua
from realtime import redis as lcredis

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Departure:
    """A connection removed by the sweeper; ``last`` if its user left the room."""

    room: str
    user_id: str
    channel: str
    last: bool


# Announces departures; returns those it could not announce (retried later).
OnDepartures = Callable[[list[Departure]], Awaitable[list[Departure]]]


class MemoryPresence:
    """In-process membership for the embedded stack (one server process)."""

    def __init__(self) -> None:
        self._conns: dict[str, dict[str, str]] = {}
        self._users: dict[str, Counter[str]] = {}

    async def join(self, room: str, channel: str, user_id: str, *, keep: bool = False) -> tuple[int, bool]:
        conns = self._conns.setdefault(room, {})
        first = False
        if channel not in conns:
            conns[channel] = user_id
            users = self._users.setdefault(room, Counter())
            users[user_id] += 1
            first = users[user_id] == 1
        return len(conns), first

    async def leave(self, room: str, channel: str, user_id: str) -> tuple[int, bool]:
        conns = self._conns.get(room, {})
        last = False
        if conns.pop(channel, None) is not None:
            users = self._users[room]
            users[user_id] -= 1
            if users[user_id] <= 0:
                del users[user_id]
                last = True
        count = len(conns)
        if not conns:
            self._conns.pop(room, None)
            self._users.pop(room, None)
        return count, last

    async def occupied(self, rooms: Iterable[str]) -> set[str]:
        """Those of ``rooms`` with at least one connection."""
        return {room for room in rooms if self._conns.get(room)}

    def start(self, on_departures: OnDepartures) -> None:
        """Nothing to sweep: the whole store lives and dies with the process."""

    def retry_announcement(self, departure: Departure) -> None:
        log.warning("user_left_room for %s in %s could not be sent", departure.user_id, departure.room)

    async def release(self) -> list[Departure]:
        """Nothing shared to release: the store dies with the process."""
        return []


BATCH = 500


def _entry(room: str, channel: str, user_id: str) -> str:
    return f"{channel}|{user_id}|{room}"


def _departures(flat: list[Any]) -> list[Departure]:
    return [Departure(flat[i], flat[i + 1], flat[i + 2], bool(int(flat[i + 3]))) for i in range(0, len(flat), 4)]


class RedisPresence:
    """Membership shared by every server process through Redis.

    Each process keeps the truth about its own connections (``_mine``) and
    makes Redis agree with it: when Redis was unreachable, lost its data or
    swept this process, the process rebuilds its memberships
    (``rebuild``); leaves Redis could not take are remembered and
    announced, once across processes, when it answers again.
    """

    # After Redis returns, how long a process waits before deciding who left
    # during the outage, so that every process has re-registered its live
    # connections first (each notices within one heartbeat plus backoff).
    SETTLE_SECONDS = 3.0

    def __init__(self) -> None:
        self.process_id = uuid.uuid4().hex
        self._mine: dict[tuple[str, str], str] = {}
        # (room, channel) -> user: leaves Redis did not take.
        self._unsent_leaves: dict[tuple[str, str], str] = {}
        self._task: asyncio.Task[None] | None = None
        self.timeout = settings.LEDGERCORE_PRESENCE_TIMEOUT_SECONDS
        self._synced = lcredis.generation()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()
        # Departures whose user_left_room the channel layer did not take.
        self._announcements: list[Departure] = []
        # Completed rebuilds (tests and benchmarks wait on it).
        self.rebuilds = 0

    def retry_announcement(self, departure: Departure) -> None:
        """Announce a departure again until the channel layer takes it."""
        self._announcements.append(departure)

    def _keys(self, room: str, user_id: str) -> list[str]:
        return [
            lcredis.key("room", room, "conns"),
            lcredis.key("room", room, "users"),
            lcredis.key("proc", self.process_id),
            lcredis.key("room", room, "left", user_id),
        ]

    @property
    def _marker_ms(self) -> int:
        return int(max(60.0, 4 * self.timeout) * 1000)

    async def _enter(self) -> None:
        while not self._open.is_set():
            await self._open.wait()
        self._inflight += 1
        self._idle.clear()

    def _exit(self) -> None:
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()

    async def join(self, room: str, channel: str, user_id: str, *, keep: bool = False) -> tuple[int, bool]:
        """Register a connection in a room: (connections in the room, first
        of its user). Raises RedisUnavailable when Redis does not answer;
        with ``keep`` the membership is then registered when Redis returns."""
        await self._enter()
        try:
            self._mine[(room, channel)] = user_id
            self._unsent_leaves.pop((room, channel), None)
            try:
                count, first = await lcredis.run_script(
                    lua.JOIN, self._keys(room, user_id), [channel, user_id, _entry(room, channel, user_id)]
                )
            except BaseException:
                if not keep:
                    self._mine.pop((room, channel), None)
                raise
            return int(count), bool(first)
        finally:
            self._exit()

    async def leave(self, room: str, channel: str, user_id: str) -> tuple[int, bool]:
        """Unregister; (connections left, last of its user). Never raises on
        an outage: the leave is then remembered and announced once Redis
        answers again (count 0, last False now). Finishes even if the
        caller is cancelled (a closing connection)."""
        self._mine.pop((room, channel), None)
        return await asyncio.shield(self._leave(room, channel, user_id))

    async def _leave(self, room: str, channel: str, user_id: str) -> tuple[int, bool]:
        await self._enter()
        try:
            count, last = await lcredis.run_script(
                lua.LEAVE,
                self._keys(room, user_id),
                [channel, user_id, _entry(room, channel, user_id), self._marker_ms],
            )
            return int(count), bool(last)
        except Exception as exc:
            if not lcredis.is_outage(exc):
                log.exception("presence leave failed; it is retried when presence is rebuilt")
            self._unsent_leaves[(room, channel)] = user_id
            return 0, False
        finally:
            self._exit()

    async def occupied(self, rooms: Iterable[str]) -> set[str]:
        """Those of ``rooms`` with at least one connection (one round trip)."""
        names = list(dict.fromkeys(rooms))
        if not names:
            return set()
        found = await lcredis.run_script(lua.OCCUPIED, [lcredis.key("room", room, "conns") for room in names], [])
        return {room for room, exists in zip(names, found, strict=True) if int(exists)}

    def start(self, on_departures: OnDepartures) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(on_departures))

    async def heartbeat(self) -> bool:
        """Refresh this process's heartbeat; True if it was absent."""
        return bool(await lcredis.run_script(lua.HEARTBEAT, [lcredis.key("procs")], [self.process_id]))

    async def sweep(self) -> list[Departure]:
        flat = await lcredis.run_script(
            lua.SWEEP,
            [lcredis.key("procs")],
            [int(self.timeout * 1000), settings.LEDGERCORE_REDIS_PREFIX, self._marker_ms],
        )
        return _departures(flat)

    async def rebuild(self) -> list[Departure]:
        """Make Redis agree with this process's live connections: register
        every membership it lacks, drop the ones of connections that closed
        meanwhile (their departures are returned). Joins and leaves wait
        until it is done."""
        self._open.clear()
        try:
            while self._inflight:
                await self._idle.wait()
            proc = lcredis.key("proc", self.process_id)
            prefix = settings.LEDGERCORE_REDIS_PREFIX
            live = {_entry(room, channel, user) for (room, channel), user in self._mine.items()}
            registered = set(await lcredis.command("SMEMBERS", proc))
            departures: list[Departure] = []
            stale = sorted(registered - live)
            for start in range(0, len(stale), BATCH):
                flat = await lcredis.run_script(
                    lua.DROP, [proc], [prefix, self._marker_ms, *stale[start : start + BATCH]]
                )
                departures.extend(_departures(flat))
            entries = sorted(live)
            for start in range(0, len(entries), BATCH):
                await lcredis.run_script(lua.RESTORE, [proc], [prefix, 0, *entries[start : start + BATCH]])
            self.rebuilds += 1
            # The first heartbeat of a process finds it absent: not news.
            (log.warning if self.rebuilds > 1 else log.info)(
                "presence rebuilt: %d memberships registered, %d stale removed", len(entries), len(departures)
            )
            return departures
        finally:
            self._open.set()

    async def _announce_gone(self) -> list[Departure]:
        """Departures of users that left while Redis was down, announced by
        exactly one process (see lua.GONE)."""
        leaves = dict(self._unsent_leaves)
        pairs = sorted({(room, user) for (room, _channel), user in leaves.items()})
        departures: list[Departure] = []
        prefix = settings.LEDGERCORE_REDIS_PREFIX
        for start in range(0, len(pairs), BATCH):
            batch = pairs[start : start + BATCH]
            flags = await lcredis.run_script(
                lua.GONE, [lcredis.key("procs")], [prefix, self._marker_ms, *[x for pair in batch for x in pair]]
            )
            departures.extend(
                Departure(room, user, "", True) for (room, user), flag in zip(batch, flags, strict=True) if int(flag)
            )
        for key in leaves:
            self._unsent_leaves.pop(key, None)
        return departures

    async def release(self) -> list[Departure]:
        """Leave for good (shutdown): stop heartbeating, remove this
        process's record and heartbeat, and any membership still in it
        (returned, to be announced)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._mine.clear()
        flat = await lcredis.run_script(
            lua.RELEASE,
            [lcredis.key("procs"), lcredis.key("proc", self.process_id)],
            [self.process_id, settings.LEDGERCORE_REDIS_PREFIX, self._marker_ms],
        )
        return _departures(flat)

    async def _run(self, on_departures: OnDepartures) -> None:
        beat = min(max(self.timeout / 3, 0.2), 1.0)
        sweep_every = max(self.timeout / 3, 0.2)
        loop = asyncio.get_running_loop()
        next_sweep = 0.0
        settle_at: float | None = None
        backlog: list[Departure] = []
        failures = 0
        while True:
            delay = beat
            try:
                generation = lcredis.generation()
                absent = await self.heartbeat()
                if absent or generation != self._synced or lcredis.generation() != self._synced:
                    synced = lcredis.generation()
                    backlog.extend(await self.rebuild())
                    self._synced = synced
                    settle_at = loop.time() + self.SETTLE_SECONDS
                    # Every heartbeat stopped during the outage: give the
                    # other processes a full timeout to beat again before
                    # sweeping any of them as dead.
                    next_sweep = max(next_sweep, loop.time() + self.timeout)
                if self._unsent_leaves and (settle_at is None or loop.time() >= settle_at):
                    backlog.extend(await self._announce_gone())
                if loop.time() >= next_sweep:
                    backlog.extend(await self.sweep())
                    next_sweep = loop.time() + sweep_every
                if self._announcements:
                    backlog.extend(self._announcements)
                    self._announcements.clear()
                if backlog:
                    backlog = list(await on_departures(backlog))
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if lcredis.is_outage(exc):
                    delay = min(0.05 * 2**failures, settings.LEDGERCORE_REDIS_RETRY_MAX_SECONDS, beat)
                else:
                    log.exception("presence heartbeat/sweep failed; retrying")
            await asyncio.sleep(delay)


_store: MemoryPresence | RedisPresence | None = None


def store() -> MemoryPresence | RedisPresence:
    global _store
    if _store is None:
        _store = RedisPresence() if lcredis.enabled() else MemoryPresence()
    return _store

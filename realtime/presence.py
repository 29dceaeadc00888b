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

from django.conf import settings

from realtime import redis as lcredis

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Departure:
    """A connection removed by the sweeper; ``last`` if its user left the room."""

    room: str
    user_id: str
    channel: str
    last: bool


OnDepartures = Callable[[list[Departure]], Awaitable[None]]


class MemoryPresence:
    """In-process membership for the embedded stack (one server process)."""

    def __init__(self) -> None:
        self._conns: dict[str, dict[str, str]] = {}
        self._users: dict[str, Counter[str]] = {}

    async def join(self, room: str, channel: str, user_id: str) -> tuple[int, bool]:
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

    async def release(self) -> list[Departure]:
        """Nothing shared to release: the store dies with the process."""
        return []


_JOIN = """
local added = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
local first = 0
if added == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then first = 1 end
  redis.call('SADD', KEYS[3], ARGV[3])
end
return {redis.call('HLEN', KEYS[1]), first}
"""

_OCCUPIED = """
local found = {}
for i, key in ipairs(KEYS) do found[i] = redis.call('EXISTS', key) end
return found
"""

_LEAVE = """
local last = 0
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    last = 1
  end
  redis.call('SREM', KEYS[3], ARGV[3])
end
return {redis.call('HLEN', KEYS[1]), last}
"""

# Heartbeat in the server's clock, so machines with skewed clocks agree.
# Returns 1 when this process had been swept as dead (then it re-registers).
_HEARTBEAT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZADD', KEYS[1], now, ARGV[1])
"""

# Removes every membership of processes whose heartbeat is older than
# ARGV[1] ms; returns flat (room, user, channel, last) quadruples.
_SWEEP = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local out = {}
for _, proc in ipairs(dead) do
  local pkey = ARGV[2] .. ':proc:' .. proc
  for _, entry in ipairs(redis.call('SMEMBERS', pkey)) do
    local i = string.find(entry, '|', 1, true)
    local j = string.find(entry, '|', i + 1, true)
    local channel = string.sub(entry, 1, i - 1)
    local user = string.sub(entry, i + 1, j - 1)
    local room = string.sub(entry, j + 1)
    local ckey = ARGV[2] .. ':room:' .. room .. ':conns'
    local ukey = ARGV[2] .. ':room:' .. room .. ':users'
    if redis.call('HDEL', ckey, channel) == 1 then
      local last = 0
      if redis.call('HINCRBY', ukey, user, -1) <= 0 then
        redis.call('HDEL', ukey, user)
        last = 1
      end
      table.insert(out, room)
      table.insert(out, user)
      table.insert(out, channel)
      table.insert(out, last)
    end
  end
  redis.call('DEL', pkey)
  redis.call('ZREM', KEYS[1], proc)
end
return out
"""


# Removes every membership of one process (ARGV[1]), its record and its
# heartbeat; returns what _SWEEP returns.
_RELEASE = """
local out = {}
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local i = string.find(entry, '|', 1, true)
  local j = string.find(entry, '|', i + 1, true)
  local channel = string.sub(entry, 1, i - 1)
  local user = string.sub(entry, i + 1, j - 1)
  local room = string.sub(entry, j + 1)
  local ckey = ARGV[2] .. ':room:' .. room .. ':conns'
  local ukey = ARGV[2] .. ':room:' .. room .. ':users'
  if redis.call('HDEL', ckey, channel) == 1 then
    local last = 0
    if redis.call('HINCRBY', ukey, user, -1) <= 0 then
      redis.call('HDEL', ukey, user)
      last = 1
    end
    table.insert(out, room)
    table.insert(out, user)
    table.insert(out, channel)
    table.insert(out, last)
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return out
"""


class RedisPresence:
    """Membership shared by every server process through Redis."""

    def __init__(self) -> None:
        self.process_id = uuid.uuid4().hex
        self._mine: dict[tuple[str, str], str] = {}
        self._task: asyncio.Task[None] | None = None
        self.timeout = settings.LEDGERCORE_PRESENCE_TIMEOUT_SECONDS

    def _keys(self, room: str) -> list[str]:
        return [
            lcredis.key("room", room, "conns"),
            lcredis.key("room", room, "users"),
            lcredis.key("proc", self.process_id),
        ]

    async def join(self, room: str, channel: str, user_id: str) -> tuple[int, bool]:
        self._mine[(room, channel)] = user_id
        count, first = await lcredis.run_script(
            _JOIN, self._keys(room), [channel, user_id, f"{channel}|{user_id}|{room}"]
        )
        return int(count), bool(first)

    async def leave(self, room: str, channel: str, user_id: str) -> tuple[int, bool]:
        self._mine.pop((room, channel), None)
        count, last = await lcredis.run_script(
            _LEAVE, self._keys(room), [channel, user_id, f"{channel}|{user_id}|{room}"]
        )
        return int(count), bool(last)

    async def occupied(self, rooms: Iterable[str]) -> set[str]:
        """Those of ``rooms`` with at least one connection (one round trip)."""
        names = list(dict.fromkeys(rooms))
        if not names:
            return set()
        found = await lcredis.run_script(_OCCUPIED, [lcredis.key("room", room, "conns") for room in names], [])
        return {room for room, exists in zip(names, found, strict=True) if int(exists)}

    def start(self, on_departures: OnDepartures) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(on_departures))

    async def heartbeat(self) -> None:
        swept = await lcredis.run_script(_HEARTBEAT, [lcredis.key("procs")], [self.process_id])
        if swept and self._mine:
            # We were presumed dead (event loop stalled past the timeout):
            # put back the memberships of connections that are still open.
            log.warning("presence heartbeat resumed after sweep; re-registering %d memberships", len(self._mine))
            for (room, channel), user_id in list(self._mine.items()):
                await self.join(room, channel, user_id)

    async def sweep(self) -> list[Departure]:
        flat = await lcredis.run_script(
            _SWEEP, [lcredis.key("procs")], [int(self.timeout * 1000), settings.LEDGERCORE_REDIS_PREFIX]
        )
        return [Departure(flat[i], flat[i + 1], flat[i + 2], bool(int(flat[i + 3]))) for i in range(0, len(flat), 4)]

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
            _RELEASE,
            [lcredis.key("procs"), lcredis.key("proc", self.process_id)],
            [self.process_id, settings.LEDGERCORE_REDIS_PREFIX],
        )
        return [Departure(flat[i], flat[i + 1], flat[i + 2], bool(int(flat[i + 3]))) for i in range(0, len(flat), 4)]

    async def _run(self, on_departures: OnDepartures) -> None:
        interval = max(self.timeout / 3, 0.2)
        while True:
            try:
                await self.heartbeat()
                departures = await self.sweep()
                if departures:
                    await on_departures(departures)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence heartbeat/sweep failed; retrying")
            await asyncio.sleep(interval)


_store: MemoryPresence | RedisPresence | None = None


def store() -> MemoryPresence | RedisPresence:
    global _store
    if _store is None:
        _store = RedisPresence() if lcredis.enabled() else MemoryPresence()
    return _store

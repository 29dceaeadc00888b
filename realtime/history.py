"""Room history: per-room offsets and epochs, and the bounded history that
missed events are recovered from.

Every event published to a room (``realtime.push``) is numbered where it is
published: the room's offset is incremented and the event appended to the
room's history in one atomic step (one Lua script on Redis, one lock in
process memory on the embedded stack). An epoch, a random id, names one
continuous run of a room's offsets: it is regenerated whenever the history
is lost (Redis restarted without persistence, keys evicted or expired, a
new embedded server process), so a client that presents an offset of
another epoch is told that its gap cannot be recovered.

The history keeps at most ``LEDGERCORE_HISTORY_SIZE`` events per room, none
older than ``LEDGERCORE_HISTORY_SECONDS``. A room silent for
``META_TTL_SECONDS`` forgets its offset and starts a new epoch.

Stored events are the encoded frame without its position (``base``, ending
in ``}``); ``framed`` adds the position the same way for live and recovered
events.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from realtime import redis as lcredis

# A room's offset and epoch outlive its history by this much: a client that
# missed nothing in a quiet room still recovers (with nothing to send).
META_TTL_SECONDS = 86_400
MAX_EPOCH_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Position:
    """A point in a room's stream: the last offset seen, in an epoch."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Entry:
    offset: int
    base: str
    skip_user: str | None


@dataclass(slots=True)
class Recovery:
    """A room's position when read, and what a client missed since its own.

    ``recovered`` is None when no recovery was asked for, True when
    ``entries`` holds every event after the asked offset (up to ``upto``),
    False when the history cannot cover the gap (other epoch, trimmed, or
    an offset the room never reached)."""

    epoch: str
    top: int
    recovered: bool | None = None
    entries: list[Entry] = field(default_factory=list)


def new_epoch() -> str:
    return os.urandom(8).hex()


def framed(base: str, room: str, offset: int, epoch: str, recovered: bool | None = None) -> str:
    """``base`` (an encoded frame) with the room's position in its envelope."""
    tail = f'{offset},"epoch":"{epoch}"'
    if recovered is not None:
        tail += ',"recovered":true' if recovered else ',"recovered":false'
    return f"{framed_head(base, room)}{tail}}}"


def framed_head(base: str, room: str) -> str:
    """What ``framed`` puts before the offset (the Redis layer numbers and
    frames a room event in one script: ``realtime.redis_layer``)."""
    return f'{base[:-1]},"room":{json.dumps(room, ensure_ascii=False)},"offset":'


# --- embedded stack ------------------------------------------------------------


@dataclass(slots=True)
class _MemoryRoom:
    epoch: str
    top: int = 0
    # (offset, monotonic time, base, skip_user), oldest first
    entries: deque[tuple[int, float, str, str | None]] = field(default_factory=deque)
    used: float = 0.0


class MemoryHistory:
    """Offsets and history in this process's memory (embedded stack): the
    only process that serves the rooms. Thread-safe: events are published
    from worker threads too."""

    def __init__(self) -> None:
        self._rooms: dict[str, _MemoryRoom] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def _room(self, name: str, now: float) -> _MemoryRoom:
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = _MemoryRoom(new_epoch())
        room.used = now
        return room

    def _trim(self, room: _MemoryRoom, now: float) -> None:
        entries = room.entries
        limit = settings.LEDGERCORE_HISTORY_SIZE
        oldest = now - settings.LEDGERCORE_HISTORY_SECONDS
        while entries and (len(entries) > limit or entries[0][1] < oldest):
            entries.popleft()

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60
        stale = now - META_TTL_SECONDS
        for name in [name for name, room in self._rooms.items() if room.used < stale]:
            del self._rooms[name]

    async def publish(self, room: str, base: str, skip_user: str | None) -> tuple[str, int]:
        return self.publish_now(room, base, skip_user)

    def publish_now(self, room: str, base: str, skip_user: str | None) -> tuple[str, int]:
        return self.publish_many_now(room, [base], skip_user)

    async def publish_many(self, room: str, bases: list[str], skip_user: str | None) -> tuple[str, int]:
        return self.publish_many_now(room, bases, skip_user)

    def publish_many_now(self, room: str, bases: list[str], skip_user: str | None) -> tuple[str, int]:
        """Append ``bases`` in order with consecutive offsets; returns the
        epoch and the first one's offset."""
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            state = self._room(room, now)
            first = state.top + 1
            for base in bases:
                state.top += 1
                state.entries.append((state.top, now, base, skip_user))
            self._trim(state, now)
            return state.epoch, first

    async def read(self, room: str, since: Position | None = None, upto: int | None = None) -> Recovery:
        now = time.monotonic()
        with self._lock:
            state = self._room(room, now)
            self._trim(state, now)
            result = Recovery(state.epoch, state.top)
            if since is None:
                return result
            last = state.top if upto is None else min(upto, state.top)
            result.recovered = False
            if since.epoch != state.epoch or since.offset < 0 or since.offset > last:
                return result
            wanted = last - since.offset
            if wanted == 0:
                result.recovered = True
                return result
            first = state.entries[0][0] if state.entries else state.top + 1
            if since.offset + 1 < first:
                return result
            start = since.offset + 1 - first
            result.entries = [
                Entry(offset, base, skip)
                for offset, _, base, skip in (state.entries[i] for i in range(start, start + wanted))
            ]
            result.recovered = True
            return result

    def forget(self, room: str) -> None:
        """Lose the room's history and offset (as a restart does)."""
        with self._lock:
            self._rooms.pop(room, None)


# --- scaled stack ----------------------------------------------------------------

# KEYS[1] the room's meta hash {epoch, offset}, KEYS[2] its history stream.
_ENSURE = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
"""

# ARGV: candidate epoch, meta ttl (s), base, skip user ('' none), max length,
# window (ms). Leaves the event's ``epoch`` and ``offset`` in locals.
NUMBER = (
    _ENSURE
    + """
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '*', 'o', offset, 'b', ARGV[3], 's', ARGV[4])
local window = tonumber(ARGV[6])
redis.call('XTRIM', KEYS[2], 'MINID', tonumber(string.match(id, '^%d+')) - window)
redis.call('PEXPIRE', KEYS[2], window)
"""
)
# Returns {epoch, offset}.
_PUBLISH = NUMBER + "return {epoch, offset}\n"

# ARGV: candidate epoch, meta ttl (s), skip user ('' none), max length,
# window (ms), then the bases in order. Appends them with consecutive
# offsets; returns {epoch, the first one's offset}.
_PUBLISH_MANY = (
    _ENSURE
    + """
local n = #ARGV - 5
local first = redis.call('HINCRBY', KEYS[1], 'offset', n) - n + 1
local id
for i = 1, n do
  id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', 'o', first + i - 1, 'b', ARGV[5 + i], 's', ARGV[3])
end
local window = tonumber(ARGV[5])
redis.call('XTRIM', KEYS[2], 'MINID', tonumber(string.match(id, '^%d+')) - window)
redis.call('PEXPIRE', KEYS[2], window)
return {epoch, first}
"""
)

# ARGV: candidate epoch, meta ttl (s), since epoch ('' none), since offset,
# upto ('' the top), window (ms), max length.
# Returns {epoch, top, state, offset1, base1, skip1, ...}: state -1 when no
# recovery was asked, 0 when the gap cannot be recovered, 1 when the entries
# are every event after since (up to upto), oldest first.
_READ = (
    _ENSURE
    + """
local top = tonumber(redis.call('HGET', KEYS[1], 'offset'))
if ARGV[3] == '' then return {epoch, top, -1} end
local since = tonumber(ARGV[4])
local upto = top
if ARGV[5] ~= '' then upto = math.min(top, tonumber(ARGV[5])) end
if ARGV[3] ~= epoch or since < 0 or since > upto then return {epoch, top, 0} end
if since == upto then return {epoch, top, 1} end
if top - since > tonumber(ARGV[7]) then return {epoch, top, 0} end
local t = redis.call('TIME')
local oldest = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[6])
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', top - since)
local out = {epoch, top, 1}
local want = since + 1
for i = #entries, 1, -1 do
  local entry = entries[i]
  local f = entry[2]
  local offset = tonumber(f[2])
  if offset > upto then break end
  if offset >= want then
    if offset ~= want or tonumber(string.match(entry[1], '^%d+')) < oldest then return {epoch, top, 0} end
    table.insert(out, offset)
    table.insert(out, f[4])
    table.insert(out, f[6])
    want = want + 1
  end
end
if want ~= upto + 1 then return {epoch, top, 0} end
return out
"""
)


class RedisHistory:
    """Offsets and history in Redis, shared by every server process."""

    @staticmethod
    def _keys(room: str) -> list[str]:
        return [lcredis.key("history", room, "meta"), lcredis.key("history", room, "events")]

    async def publish(self, room: str, base: str, skip_user: str | None) -> tuple[str, int]:
        epoch, offset = await lcredis.run_script(_PUBLISH, *self.numbering(room, base, skip_user))
        return str(epoch), int(offset)

    def numbering(self, room: str, base: str, skip_user: str | None) -> tuple[list[str], list[Any]]:
        """The keys and arguments of ``NUMBER`` for an event of ``room``."""
        return self._keys(room), [
            new_epoch(),
            max(META_TTL_SECONDS, int(settings.LEDGERCORE_HISTORY_SECONDS) + 1),
            base,
            skip_user or "",
            settings.LEDGERCORE_HISTORY_SIZE,
            int(settings.LEDGERCORE_HISTORY_SECONDS * 1000),
        ]

    async def publish_many(self, room: str, bases: list[str], skip_user: str | None) -> tuple[str, int]:
        """Append ``bases`` in order with consecutive offsets, in one round
        trip; returns the epoch and the first one's offset."""
        assert bases, "nothing to publish"
        epoch, first = await lcredis.run_script(
            _PUBLISH_MANY,
            self._keys(room),
            [
                new_epoch(),
                max(META_TTL_SECONDS, int(settings.LEDGERCORE_HISTORY_SECONDS) + 1),
                skip_user or "",
                settings.LEDGERCORE_HISTORY_SIZE,
                int(settings.LEDGERCORE_HISTORY_SECONDS * 1000),
                *bases,
            ],
        )
        return str(epoch), int(first)

    async def read(self, room: str, since: Position | None = None, upto: int | None = None) -> Recovery:
        reply = await lcredis.run_script(
            _READ,
            self._keys(room),
            [
                new_epoch(),
                max(META_TTL_SECONDS, int(settings.LEDGERCORE_HISTORY_SECONDS) + 1),
                since.epoch if since is not None else "",
                since.offset if since is not None else 0,
                "" if upto is None else upto,
                int(settings.LEDGERCORE_HISTORY_SECONDS * 1000),
                settings.LEDGERCORE_HISTORY_SIZE,
            ],
        )
        result = Recovery(str(reply[0]), int(reply[1]))
        state = int(reply[2])
        if state >= 0:
            result.recovered = bool(state)
            rest = reply[3:]
            result.entries = [Entry(int(rest[i]), rest[i + 1], rest[i + 2] or None) for i in range(0, len(rest), 3)]
        return result

    async def forget(self, room: str) -> None:
        await lcredis.command("DEL", *self._keys(room))


_store: MemoryHistory | RedisHistory | None = None


def store() -> MemoryHistory | RedisHistory:
    global _store
    if _store is None:
        _store = RedisHistory() if lcredis.enabled() else MemoryHistory()
    return _store


def parse_since(offset: Any, epoch: Any) -> Position | None:
    """A position from untrusted text (query parameters), None if malformed."""
    if not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH_LENGTH:
        return None
    if not isinstance(offset, str) or not offset.isascii() or not offset.isdigit() or len(offset) > 18:
        return None
    return Position(epoch, int(offset))

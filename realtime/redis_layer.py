"""The scaled stack's channel layer: channels-redis's, surviving outages.

With the stock layer a Redis restart or failover is fatal to every
connection: the receive loop of each consumer raises on the broken
connection and channels closes the socket with 1011. This subclass:

- ``receive``: one pump task per event loop pops this process's messages
  (never cancelled with a consumer, so no message Redis handed over is lost
  when a socket closes) and fills each consumer's buffer. It pops them in
  batches, one round trip for up to ``RECEIVE_BATCH`` waiting messages,
  blocking only when none waits (the stock layer spends four round trips on
  each message to keep a backup copy against a cancelled receiver, which
  the pump never is; a process that dies loses its channel's messages
  either way). On a connection
  error the pump waits for Redis (one probe per event loop, backoff
  doubling up to ``retry_max``) and receives again; sockets stay open.
- remembers the group memberships of this process's channels: after an
  outage it re-adds all of them (a Redis restarted without persistence, or a
  replica promoted before it had them, has lost them), and applies the
  discards that failed meanwhile.
- ``group_add``: the membership is recorded first; if Redis does not answer
  it raises ``RedisUnavailable``, and the membership is re-added when Redis
  returns unless the caller discards it.
- ``group_discard``: never raises; a discard Redis did not take is retried
  after the outage.
- ``send`` / ``group_send``: raise ``RedisUnavailable`` at once while the
  process knows Redis is down (callers with a durable outbox retry; others
  log and drop). ``group_send`` takes two round trips (the stock layer's
  four): the group's members read, then one script adds the message to
  each of their channels within capacity.
- room events (``realtime.push``: ``room``, ``epoch`` and ``offset``):
  ``group_send_numbered`` numbers an event in the room's history and adds
  it to the room's member channels in one script, so that two publishers
  (two processes, or two requests of one) cannot interleave between the
  two steps: each process channel gets the room's events in offset order.
  A gap seen by a process is otherwise seen by every local member of the
  room, each holding, waiting and filling it. Events sent otherwise (a
  layer of several Redis hosts, encrypted messages) still come in the
  order their ``group_send`` came; the pump hands them on in offset order
  per room: one that comes before its predecessor is held until the
  predecessor comes, at most ``REORDER_HOLD_SECONDS`` (then it goes on, and
  the connection's stream fills the gap from the room's history:
  ``realtime.streams``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any

from channels_redis.core import RedisChannelLayer
from channels_redis.utils import create_pool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from realtime.mailbox import Mailbox
from realtime.redis import REDIS_ERRORS, RedisUnavailable, is_down, on_recovery

log = logging.getLogger(__name__)

# The first reconnection attempt after an outage; later ones back off, doubling.
RECONNECT_FIRST_SECONDS = 0.1
# Messages of this process popped in one round trip, at most.
RECEIVE_BATCH = 100
# How long a room event that came before its predecessor waits for it in the
# pump (below the streams' own GAP_WAIT_SECONDS).
REORDER_HOLD_SECONDS = 0.1
# Rooms whose last offset the pump remembers, per event loop (least recent
# forgotten first).
REORDER_ROOMS = 10_000
# Numbered room events sent at once per event loop, at most: the others
# wait their turn (the connection pool holds at most 100 connections).
NUMBERED_IN_FLIGHT = 50

# KEYS: the members' channel keys. ARGV: a message per key, a capacity per
# key, then the time and the expiry (s). Expired messages are discarded
# first; a channel at capacity does not get the message (as the stock
# layer). Returns how many were at capacity.
_GROUP_SEND = """
local n = #KEYS
local now = ARGV[2 * n + 1]
local expiry = tonumber(ARGV[2 * n + 2])
local oldest = math.floor(tonumber(now)) - expiry
local over = 0
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, oldest)
  if redis.call('ZCARD', KEYS[i]) < tonumber(ARGV[n + i]) then
    redis.call('ZADD', KEYS[i], now, ARGV[i])
    redis.call('EXPIRE', KEYS[i], expiry)
  else
    over = over + 1
  end
end
return over
"""


# Appended to a numbering script (``realtime.history.NUMBER``: it leaves the
# event's ``epoch`` and ``offset`` in locals): the numbered room event is
# added to each member channel of the room's group, in the stock layer's
# message format, within capacity. KEYS: the numbering's, then the group.
# ARGV: the numbering's, then group expiry (s), message expiry (s),
# capacity, the layer's key prefix, the serializer's random prefix, the
# message type, room, skip user ('' none), the text before the offset, and
# last how many of ARGV are the numbering's. Returns {epoch, offset, over
# capacity}.
_DELIVER_NUMBERED = """
local n = tonumber(ARGV[#ARGV])
local group = KEYS[#KEYS]
local prefix = ARGV[n + 4]
local t = redis.call('TIME')
local seconds = tonumber(t[1])
local now = seconds + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', group, 0, seconds - tonumber(ARGV[n + 1]))
local keys, channels = {}, {}
for _, channel in ipairs(redis.call('ZRANGE', group, 0, -1)) do
  local bang = string.find(channel, '!', 1, true)
  local key = prefix .. (bang and string.sub(channel, 1, bang) or channel)
  if channels[key] == nil then
    channels[key] = {}
    table.insert(keys, key)
  end
  table.insert(channels[key], channel)
end
local message = {type = ARGV[n + 6], room = ARGV[n + 7], offset = offset, epoch = epoch,
  text = ARGV[n + 9] .. string.format('%d', offset) .. ',"epoch":"' .. epoch .. '"}'}
if ARGV[n + 8] ~= '' then message['skip_user'] = ARGV[n + 8] end
local expiry = tonumber(ARGV[n + 2])
local capacity = tonumber(ARGV[n + 3])
local over = 0
for _, key in ipairs(keys) do
  redis.call('ZREMRANGEBYSCORE', key, 0, seconds - expiry)
  if redis.call('ZCARD', key) < capacity then
    message['__asgi_channel__'] = channels[key]
    redis.call('ZADD', key, now, ARGV[n + 5] .. cmsgpack.pack(message))
    redis.call('EXPIRE', key, expiry)
  else
    over = over + 1
  end
end
return {epoch, offset, over}
"""


class _RoomOrder:
    __slots__ = ("epoch", "held", "last", "timer")

    def __init__(self, epoch: str, last: int) -> None:
        self.epoch = epoch
        self.last = last
        # offset -> (channels, message): came before a predecessor
        self.held: dict[int, tuple[list[str], dict[str, Any]]] = {}
        self.timer: asyncio.TimerHandle | None = None


def _last_offset(offset: int, message: dict[str, Any]) -> int:
    """The last offset a message carries: several events published together
    (``realtime.push.broadcast_many``: ``texts``) take consecutive offsets
    from ``offset``."""
    texts = message.get("texts")
    return offset + len(texts) - 1 if isinstance(texts, list) and texts else offset


class RoomOrder:
    """Room events of one event loop's process channel, handed on (``put``)
    in offset order per room; see the module's docstring."""

    def __init__(self, put: Callable[[list[str], dict[str, Any]], None], hold: float = REORDER_HOLD_SECONDS) -> None:
        self.put = put
        self.hold = hold
        self._rooms: OrderedDict[str, _RoomOrder] = OrderedDict()

    def handle(self, channels: list[str], message: dict[str, Any]) -> None:
        room, epoch, offset = message.get("room"), message.get("epoch"), message.get("offset")
        if not isinstance(room, str) or not isinstance(epoch, str) or not isinstance(offset, int):
            self.put(channels, message)
            return
        state = self._rooms.get(room)
        if state is None or state.epoch != epoch:
            # A room first seen, or a new epoch: nothing to wait for.
            if state is not None:
                self._release(state)
            self._rooms[room] = _RoomOrder(epoch, _last_offset(offset, message))
            self._rooms.move_to_end(room)
            if len(self._rooms) > REORDER_ROOMS:
                self._release(self._rooms.popitem(last=False)[1])
            self.put(channels, message)
            return
        self._rooms.move_to_end(room)
        if offset > state.last + 1:
            state.held[offset] = (channels, message)
            if state.timer is None:
                state.timer = asyncio.get_running_loop().call_later(self.hold, self._expire, room, state)
            return
        # The next one (or a late or repeated one, which the streams drop).
        self.put(channels, message)
        if offset == state.last + 1:
            state.last = _last_offset(offset, message)
            while (waiting := state.held.pop(state.last + 1, None)) is not None:
                state.last = _last_offset(state.last + 1, waiting[1])
                self.put(*waiting)
            if not state.held and state.timer is not None:
                state.timer.cancel()
                state.timer = None

    def _expire(self, room: str, state: _RoomOrder) -> None:
        """The hold is over: what waits goes on, in order, past the gap."""
        state.timer = None
        self._release(state)

    def _release(self, state: _RoomOrder) -> None:
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        for offset in sorted(state.held):
            channels, message = state.held.pop(offset)
            self.put(channels, message)
            state.last = max(state.last, _last_offset(offset, message))

    def held(self) -> int:
        return sum(len(state.held) for state in self._rooms.values())


class ResilientRedisChannelLayer(RedisChannelLayer):  # type: ignore[misc]  # channels-redis is untyped
    CLOSED_REMEMBERED = 100_000

    def __init__(self, *args: Any, retry_max: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Process-local channels' messages (as channels-redis's BoundedQueue:
        # a full buffer drops its oldest), in mailboxes: see realtime.mailbox.
        self.receive_buffer: defaultdict[str, Mailbox] = defaultdict(
            functools.partial(Mailbox, self.capacity, drop_oldest=True)
        )
        self.retry_max = retry_max
        # group -> this process's channels in it
        self._memberships: defaultdict[str, set[str]] = defaultdict(set)
        self._failed_discards: set[tuple[str, str]] = set()
        self._recovery: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._nudges: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        on_recovery(self._nudge_all)
        self._pumps: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._orders: dict[asyncio.AbstractEventLoop, RoomOrder] = {}
        # Numbered sends in flight per loop, at most (below the pool's size).
        self._numbering: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        # Process-local channels whose consumer ended (most recent last).
        self._closed: OrderedDict[str, None] = OrderedDict()
        # Each completed recovery (tests and benchmarks wait on it).
        self.recoveries = 0

    def create_pool(self, index: int) -> Any:
        # One immediate retry on a connection error: after Redis restarts,
        # each pooled connection fails once on first use (its socket is
        # dead) although Redis answers.
        host = {"retry": Retry(NoBackoff(), 1), **self.hosts[index]}
        return create_pool(host)

    # --- outage handling ---------------------------------------------------

    def _recovering(self) -> asyncio.Task[None] | None:
        task = self._recovery.get(asyncio.get_running_loop())
        return task if task is not None and not task.done() else None

    def _recover(self, exc: BaseException) -> asyncio.Task[None]:
        """The loop's recovery task, started if none runs."""
        task = self._recovering()
        if task is None:
            log.warning("channel layer lost Redis (%s: %s); reconnecting", type(exc).__name__, exc)
            task = asyncio.get_running_loop().create_task(self._reconnect(time.monotonic()))
            self._recovery[asyncio.get_running_loop()] = task
        return task

    async def _reconnect(self, since: float) -> None:
        nudge = self._nudges.setdefault(asyncio.get_running_loop(), asyncio.Event())

        async def backoff(delay: float) -> None:
            # The next attempt comes after the backoff, or at once when a
            # caller has seen Redis answer again (``_ready``).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(nudge.wait(), delay)
            nudge.clear()

        await backoff(RECONNECT_FIRST_SECONDS)
        # Then 0.2 s, 0.4 s, ... up to LEDGERCORE_REDIS_RETRY_MAX_SECONDS, for as long as it takes.
        attempts = AsyncRetrying(
            retry=retry_if_exception_type(REDIS_ERRORS),
            wait=wait_exponential(multiplier=2 * RECONNECT_FIRST_SECONDS, max=self.retry_max),
            sleep=backoff,
        )
        readded: int = await attempts(self._reconnect_once)
        self.recoveries += 1
        log.warning(
            "channel layer reconnected to Redis after %.1f s; re-added %d group memberships",
            time.monotonic() - since,
            readded,
        )

    async def _reconnect_once(self) -> int:
        for index in range(self.ring_size):
            await self.connection(index).ping()
        return await self._resync()

    async def _resync(self) -> int:
        """Put back every membership of this process; apply failed discards."""
        now = time.time()
        count = 0
        for group, channels in list(self._memberships.items()):
            if not channels:
                continue
            connection = self.connection(self.consistent_hash(group))
            key = self._group_key(group)
            await connection.zadd(key, dict.fromkeys(channels, now))
            await connection.expire(key, self.group_expiry)
            count += len(channels)
        for group, channel in list(self._failed_discards):
            if channel not in self._memberships.get(group, ()):
                await self.connection(self.consistent_hash(group)).zrem(self._group_key(group), channel)
            self._failed_discards.discard((group, channel))
        return count

    def _nudge_all(self) -> None:
        """Redis answers again: every loop's reconnection attempts now."""
        for loop, nudge in list(self._nudges.items()):
            if not loop.is_closed():
                loop.call_soon_threadsafe(nudge.set)

    async def _ready(self) -> None:
        """Return when the layer may use Redis; raise RedisUnavailable at
        once while Redis is known to be down. When the rest of the process
        has seen Redis answer again (``realtime.redis``) but this layer's
        reconnection is still in its backoff, it is attempted now and
        waited for, briefly."""
        task = self._recovering()
        if task is None:
            return
        if is_down():
            raise RedisUnavailable(self.retry_max)
        nudge = self._nudges.get(asyncio.get_running_loop())
        if nudge is not None:
            nudge.set()
        done, _ = await asyncio.wait({task}, timeout=self.retry_max + 1)
        if not done:
            raise RedisUnavailable(self.retry_max)

    # --- channel layer API ---------------------------------------------------

    async def receive(self, channel: str) -> dict[str, Any]:
        if "!" not in channel:
            while True:
                try:
                    message: dict[str, Any] = await super().receive(channel)
                    return message
                except REDIS_ERRORS as exc:
                    await asyncio.shield(self._recover(exc))
        # Process-local channels: one pump task per event loop pops this
        # process's messages and hands them to the receivers' buffers. The
        # stock layer lets the receiver that holds its lock pop for everyone;
        # when that receiver's consumer ends (a socket closes) its
        # cancellation can drop a message Redis already handed over, which
        # lost presence events under churn.
        assert self.require_valid_channel_name(channel)
        self._ensure_pump(self.non_local_name(channel))
        try:
            queue = self.receive_buffer[channel]
            message = await queue.get()
        except asyncio.CancelledError:
            # The consumer ended: what is buffered or still on its way for
            # it has no reader.
            self._closed[channel] = None
            if len(self._closed) > self.CLOSED_REMEMBERED:
                self._closed.popitem(last=False)
            self.receive_buffer.pop(channel, None)
            raise
        if queue.empty() and self.receive_buffer.get(channel) is queue:
            del self.receive_buffer[channel]
        return message

    def _ensure_pump(self, real_channel: str) -> None:
        loop = asyncio.get_running_loop()
        pump = self._pumps.get(loop)
        if pump is None or pump.done():
            self._pumps[loop] = loop.create_task(self._pump(real_channel))

    def _put(self, channels: list[str], message: dict[str, Any]) -> None:
        for channel in channels:
            if channel not in self._closed:
                self.receive_buffer[channel].put_nowait(message)

    async def _pump(self, real_channel: str) -> None:
        order = self._orders[asyncio.get_running_loop()] = RoomOrder(self._put)
        while True:
            try:
                batch = await self._pop(real_channel)
            except REDIS_ERRORS as exc:
                # Wait for the reconnection and receive again: sockets stay.
                await asyncio.shield(self._recover(exc))
                continue
            for content in batch:
                try:
                    message = self.deserialize(content)
                except Exception:
                    log.exception("channel layer: undeliverable message on %s", real_channel)
                    continue
                # The full channel name travels in the message.
                target = message.pop("__asgi_channel__", real_channel)
                order.handle(target if isinstance(target, list) else [target], message)

    async def _pop(self, real_channel: str) -> list[bytes]:
        """The process channel's waiting messages, oldest first (up to
        RECEIVE_BATCH); when none waits, the next one, blocking up to the
        layer's brpop timeout (an empty list after it)."""
        connection = self.connection(self.consistent_hash(real_channel))
        key = self.prefix + real_channel
        popped = await connection.zpopmin(key, RECEIVE_BATCH)
        if popped:
            return [member for member, _score in popped]
        result = await connection.bzpopmin(key, timeout=self.brpop_timeout)
        return [] if result is None else [result[1]]

    async def group_add(self, group: str, channel: str) -> None:
        self._memberships[group].add(channel)
        self._failed_discards.discard((group, channel))
        await self._ready()
        try:
            await super().group_add(group, channel)
        except REDIS_ERRORS as exc:
            self._recover(exc)
            raise RedisUnavailable(self.retry_max) from exc

    async def group_discard(self, group: str, channel: str) -> None:
        members = self._memberships.get(group)
        if members is not None:
            members.discard(channel)
            if not members:
                del self._memberships[group]
        if self._recovering() is not None:
            self._failed_discards.add((group, channel))
            return
        try:
            await super().group_discard(group, channel)
        except REDIS_ERRORS as exc:
            self._failed_discards.add((group, channel))
            self._recover(exc)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._ready()
        try:
            await super().send(channel, message)
        except REDIS_ERRORS as exc:
            raise RedisUnavailable(self.retry_max) from exc

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self._ready()
        try:
            await self._group_send(group, message)
        except REDIS_ERRORS as exc:
            raise RedisUnavailable(self.retry_max) from exc

    async def _group_send(self, group: str, message: dict[str, Any]) -> None:
        """The stock layer's group send in two round trips per Redis host."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        async with connection.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        if not members:
            return
        by_connection, messages, capacities = self._map_channel_keys_to_connection(
            [member.decode("utf8") for member in members], message
        )
        for index, keys in by_connection.items():
            args = [messages[k] for k in keys] + [capacities[k] for k in keys] + [time.time(), int(self.expiry)]
            script = self.connection(index).register_script(_GROUP_SEND)
            over = await script(keys=keys, args=args)
            if over:
                log.info("%s of %s channels over capacity in group %s", over, len(keys), group)

    def numbers_room_events(self) -> bool:
        """Whether ``group_send_numbered`` may be used: one Redis, messages
        neither encrypted nor with per-channel capacities, in msgpack."""
        serializer = self._serializer
        return (
            self.ring_size == 1
            and not self.channel_capacity
            and getattr(serializer, "crypter", None) is None
            and type(serializer).__name__.startswith("MsgPack")
        )

    async def group_send_numbered(
        self,
        group: str,
        message: dict[str, Any],
        numbering: str,
        keys: list[str],
        args: list[Any],
        text_head: str,
    ) -> tuple[str, int]:
        """Number a room event (``numbering``, a Lua script that leaves
        ``epoch`` and ``offset``) and send it to ``group`` in one script:
        events of one room reach each member channel in offset order, and
        an event numbered is an event sent. ``message`` has ``type``,
        ``room`` and ``skip_user``; its ``text`` is ``text_head``, the
        offset and the epoch (``realtime.history.framed``). Returns the
        event's epoch and offset."""
        assert set(message) <= {"type", "room", "skip_user"}, message
        assert self.require_valid_group_name(group), "Group name not valid"
        await self._ready()
        prefix_length = self._serializer.random_prefix_length
        argv = [
            *args,
            self.group_expiry,
            int(self.expiry),
            self.capacity,
            self.prefix,
            os.urandom(prefix_length) if prefix_length > 0 else b"",
            message["type"],
            message["room"],
            message.get("skip_user") or "",
            text_head,
            len(args),
        ]
        connection = self.connection(0)
        script = connection.register_script(numbering + _DELIVER_NUMBERED)
        slots = self._numbering.get(asyncio.get_running_loop())
        if slots is None:
            slots = self._numbering[asyncio.get_running_loop()] = asyncio.Semaphore(NUMBERED_IN_FLIGHT)
        try:
            async with slots:
                epoch, offset, over = await script(keys=[*keys, self._group_key(group)], args=argv)
        except REDIS_ERRORS as exc:
            raise RedisUnavailable(self.retry_max) from exc
        if over:
            log.info("%s channels over capacity in group %s", over, group)
        return epoch.decode() if isinstance(epoch, bytes) else str(epoch), int(offset)

    def local_memberships(self) -> int:
        return sum(len(channels) for channels in self._memberships.values())

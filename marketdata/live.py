"""Live charts: ``market:<SYMBOL>:<resolution>`` rooms.

Ingestion publishes the trades it stored, after commit, on the channel-layer
group ``market-ticks.<SYMBOL>`` (``marketdata.publish``; Redis on the scaled
stack, so a feed in one process reaches subscribers in all of them). Every
server process with subscribers to a symbol runs one ``MarketHub`` that
receives those trades and keeps, per room, the forming candle (a
``CandleBuilder``). Updates go to the
process's own subscribers (``realtime.local``): one encoded frame per room
and flush, never one per subscriber, and no copy per process.

Exactly once into the forming candle: writers of one (instrument, venue)
series are serialised until commit (see ``ingest``), so trade ids of a
series grow in commit order. A published batch carries its series' highest
trade id (its watermark). A room is seeded from one consistent database
snapshot (forming candle + each series' highest visible trade id); a batch
whose watermark is not above the seed's is already counted and is skipped.

Flushes: at most ``FLUSHES_PER_SECOND`` per room. A trade after a quiet
period is sent at once; later ones are conflated. A flush sends the final
state of every bucket that closed since the previous flush, then the
forming bucket, in time order; a member never gets a bar older than the last
one it got (``realtime.local`` positions), so a chart never moves back.

Joining: the connection gets ``market_chart_initial_data`` built from stored
candles and the room's in-memory state under the room's lock, and is added to
the room's local members in the same step, so the series and the updates
that follow have no missing and no duplicate bucket. The stored candles are
read with their watermarks in one snapshot, and the join first waits until
the room has applied every published trade up to them (trades committed
before the read may still be in flight on the channel layer), so each
in-memory bucket holds at least its stored state.

One message's trades are applied in (timestamp, venue, trade id) order
across its venues; a trade older than the room's forming bucket that
arrives in a later message (another venue's ingestion committing late) is
counted by the stored candles but not by the chart (``late_trades``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from marketdata.candles import Candle, CandleBuilder, Tick
from marketdata.listings import configured_precision
from marketdata.precision import price_precision
from marketdata.publish import TICKS_MESSAGE, tick_group
from marketdata.reads import live_history, live_seed
from marketdata.resolutions import RESOLUTION_MS
from realtime.local import local_rooms
from realtime.protocol import encode, now_ms

log = logging.getLogger(__name__)

FLUSHES_PER_SECOND = 10
FLUSH_INTERVAL = 1.0 / FLUSHES_PER_SECOND
INITIAL_CANDLES = 300
# How long a join waits for trades already stored to arrive on the live stream.
CATCH_UP_SECONDS = 2.0


# ------------------------------------------------------------------ rooms


@dataclass
class RoomState:
    room: str
    symbol: str
    resolution: str
    builder: CandleBuilder
    # Per venue: the highest trade row id already counted.
    seen: dict[str, int] = field(default_factory=dict)
    closed: list[Candle] = field(default_factory=list)
    dirty: bool = False
    last_flush: float = 0.0
    flush_handle: asyncio.TimerHandle | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    buffered: list[list[tuple[str, int, list[Tick], bool]]] = field(default_factory=list)
    sent_ts: int | None = None

    # Set whenever ``seen`` moves: a joiner waits on it to catch up.
    advanced: asyncio.Event = field(default_factory=asyncio.Event)

    def apply(self, venue: str, watermark: int, ticks: list[Tick], last: bool = True) -> None:
        self.apply_series([(venue, watermark, ticks, last)])

    def apply_series(self, series: Iterable[tuple[str, int, list[Tick], bool]]) -> None:
        """Apply the parts of one published message. Parts already in the
        seed snapshot are skipped; the others' trades are applied in
        (timestamp, venue, trade id) order across venues, so that one
        ingestion's trades of two venues on either side of a bucket boundary
        all land in their own buckets."""
        fresh: list[Tick] = []
        for venue, watermark, ticks, last in series:
            if watermark <= self.seen.get(venue, 0):
                continue  # already counted
            if last:
                self.seen[venue] = watermark
                self.advanced.set()
            fresh.extend(ticks)
        if not fresh:
            return
        fresh.sort(key=Tick.key)
        for tick in fresh:
            for _, final in self.builder.apply(tick):
                self.closed.append(final.copy())
        self.dirty = True

    def caught_up(self, watermarks: dict[str, int]) -> bool:
        return all(self.seen.get(venue, 0) >= mark for venue, mark in watermarks.items())


def _ticks(venue: str, rows: list[list[Any]]) -> list[Tick]:
    return [Tick(int(ts), Decimal(price), Decimal(size), venue, str(trade_id)) for ts, price, size, trade_id in rows]


def live_payload(symbol: str, resolution: str, candle: Candle) -> dict[str, Any]:
    wire = candle.to_wire()
    return {"symbol": symbol, "resolution": resolution, **wire}


class MarketHub:
    """One per server process (and event loop)."""

    def __init__(self) -> None:
        self.rooms: dict[str, RoomState] = {}
        self.symbols: dict[str, set[str]] = {}
        self.channel: str | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock = asyncio.Lock()
        self.flushes = 0

    async def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._receiver is not None and not self._receiver.done() and self._loop is loop:
            return
        async with self._start_lock:
            if self._receiver is not None and not self._receiver.done() and self._loop is loop:
                return
            layer = get_channel_layer()
            assert layer is not None
            # The default prefix, as the consumers' channels: channels_redis
            # polls one Redis list per channel prefix under a single receive
            # lock held through a blocking pop, so a prefix of its own would
            # leave the hub queued behind every consumer and its trades
            # undelivered for seconds (never, with many connections).
            self.channel = await layer.new_channel()
            self._loop = loop
            self.rooms.clear()
            self.symbols.clear()
            self._receiver = loop.create_task(self._receive(layer, self.channel))

    async def _receive(self, layer: Any, channel: str) -> None:
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("market hub receive failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if message.get("type") == TICKS_MESSAGE:
                try:
                    self.on_ticks(message)
                except Exception:
                    log.exception("live trades of %s not applied", message.get("symbol"))

    def on_ticks(self, message: dict[str, Any]) -> None:
        symbol = message["symbol"]
        for room_name in self.symbols.get(symbol, ()):
            room = self.rooms[room_name]
            series = [
                (venue, watermark, _ticks(venue, rows), last) for venue, watermark, rows, last in message["series"]
            ]
            if not room.ready.is_set():
                room.buffered.append(series)
            else:
                room.apply_series(series)
            if room.dirty:
                self._schedule(room)

    # --- flushing ---------------------------------------------------------

    def _schedule(self, room: RoomState) -> None:
        if room.flush_handle is not None:
            return
        assert self._loop is not None
        wait = max(0.0, room.last_flush + FLUSH_INTERVAL - time.monotonic())
        room.flush_handle = self._loop.call_later(wait, lambda: self._loop.create_task(self._flush(room)))  # type: ignore[union-attr]

    async def _flush(self, room: RoomState) -> None:
        async with room.lock:
            room.flush_handle = None
            if not room.dirty:
                return
            room.dirty = False
            room.last_flush = time.monotonic()
            bars = room.closed
            room.closed = []
            forming = room.builder.forming(room.resolution)
            if forming is not None:
                bars = [*bars, forming]
            for bar in bars:
                text = encode("market_chart_live_update", live_payload(room.symbol, room.resolution, bar))
                await local_rooms.send(room.room, text, position=bar.timestamp)
            self.flushes += 1

    # --- joining ----------------------------------------------------------

    async def join(self, connection: Any, request_id: Any, room_name: str, symbol: str, resolution: str) -> None:
        await self._ensure_started()
        room = self.rooms.get(room_name)
        if room is None:
            room = RoomState(room_name, symbol, resolution, CandleBuilder([resolution]))
            self.rooms[room_name] = room
            first_of_symbol = symbol not in self.symbols
            self.symbols.setdefault(symbol, set()).add(room_name)
            if first_of_symbol:
                layer = get_channel_layer()
                assert layer is not None and self.channel is not None
                # Subscribed before the seed snapshot is read: nothing
                # committed after it can be missed.
                await layer.group_add(tick_group(symbol), self.channel)
            try:
                await self._seed(room)
            except Exception:
                self.rooms.pop(room_name, None)
                self.symbols.get(symbol, set()).discard(room_name)
                raise
        await room.ready.wait()
        async with room.lock:
            # Read under the lock: no flush can finalise a bucket between
            # this read and the merge, so every stored bucket older than the
            # room's in-memory bars was final before the read.
            start, end = _window(resolution)
            history, watermarks = await database_sync_to_async(live_history)(
                symbol, resolution, start_ms=start, end_ms=end
            )
            # Trades committed before the read may still be on their way to
            # this hub. Until they are applied, an in-memory bucket can be
            # behind its stored state while a later stored bucket is already
            # in the history; the joiner would then skip the in-memory
            # bucket's final update (older than its last bar). Wait for them.
            await _catch_up(room, watermarks)
            series = _merge(history, room, start)
            # Nothing older than the series (or its window) ever follows it.
            position = series[-1].timestamp if series else start
            wire = [c.to_wire() for c in series]
            precision = price_precision(wire, await database_sync_to_async(configured_precision)(symbol))
            await connection.send_event(
                "market_chart_initial_data",
                {"symbol": symbol, "resolution": resolution, "pricePrecision": precision, "series": wire},
                request_id,
            )
            if connection.rooms.get(room_name) is not None:
                local_rooms.add(room_name, connection, position)

    async def _seed(self, room: RoomState) -> None:
        forming, watermarks = await database_sync_to_async(live_seed)(
            room.symbol, room.resolution, since_ms=_window(room.resolution)[0]
        )
        if forming is not None:
            room.builder.seed(room.resolution, forming)
        room.seen = dict(watermarks)
        for series in room.buffered:
            room.apply_series(series)
        room.buffered = []
        room.ready.set()
        if room.dirty:
            self._schedule(room)


def _window(resolution: str) -> tuple[int, int]:
    """[start, end) of the buckets a joiner's initial series covers: the
    last INITIAL_CANDLES closed ones and the current one."""
    size = RESOLUTION_MS[resolution]
    end = now_ms() + size
    start = end - size * (INITIAL_CANDLES + 1)
    return start - start % size, end


async def _catch_up(room: RoomState, watermarks: dict[str, int]) -> bool:
    """Wait (at most CATCH_UP_SECONDS) until the room has applied every
    published trade up to ``watermarks``. Trades stored by a process that
    does not publish to this hub (an import on the embedded stack) never
    arrive: after the wait the join goes on with the stored candles for the
    buckets the room has not seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CATCH_UP_SECONDS
    while not room.caught_up(watermarks):
        left = deadline - loop.time()
        if left <= 0:
            # Counted as seen from now on, so that later joins do not wait
            # for them again; their buckets come from the stored candles.
            for venue, mark in watermarks.items():
                room.seen[venue] = max(room.seen.get(venue, 0), mark)
            log.warning("%s: stored trades never reached the live stream; joining without them", room.room)
            return False
        room.advanced.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.advanced.wait(), left)
    return True


def _merge(history: list[Candle], room: RoomState, start: int) -> list[Candle]:
    """The room's in-memory bars (buckets closed since the last flush and the
    forming one) are the freshest state of their buckets; stored candles
    fill in before them, and after them when the database is ahead of the
    live stream (trades still in flight, or stored by a process that does not
    publish to this one)."""
    memory = list(room.closed)
    forming = room.builder.forming(room.resolution)
    if forming is not None:
        memory.append(forming)
    memory = [bar for bar in memory if bar.timestamp >= start]  # a room idle for long
    if not memory:
        return history[-INITIAL_CANDLES:]
    first, last = memory[0].timestamp, memory[-1].timestamp
    series = (
        [c for c in history if c.timestamp < first]
        + [c.copy() for c in memory]
        + [c for c in history if c.timestamp > last]
    )
    return series[-INITIAL_CANDLES:]


hub = MarketHub()

"""Candles from trades, exact and deterministic, in plain Python (no Django
import): used by ingestion (stored roll-ups), queries (sub-second candles,
venue merges) and the live feed (``CandleBuilder``).

Exactness: prices, sizes and volumes are ``Decimal`` and every sum runs in
``EXACT``, a context wide enough for any stored value that raises instead of
rounding. Floats appear only at the wire edge (``Candle.to_wire``).

Order of trades, which decides open and close: ``(exchange timestamp ms,
venue code, exchange trade id)``. Trade ids made of ASCII digits compare as
integers (Binance, Coinbase and most exchanges number trades) and before any
other id; other ids compare as strings. Within one venue this is the
exchange's own order. Across venues, trades in the same millisecond are
ordered by venue code (alphabetically): arbitrary but fixed, so a merged
series is the same whatever order trades arrived in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)
from typing import Any, NamedTuple

from marketdata.resolutions import RESOLUTION_MS, RESOLUTIONS, STORED_RESOLUTIONS

EXACT = Context(
    prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact, Rounded]
)

TradeIdKey = tuple[int, int, str]
OrderKey = tuple[int, str, TradeIdKey]


def trade_id_key(trade_id: str) -> TradeIdKey:
    if trade_id.isascii() and trade_id.isdigit():
        return (0, int(trade_id), trade_id)
    return (1, 0, trade_id)


def order_key(ts: int, venue: str, trade_id: str) -> OrderKey:
    return (ts, venue, trade_id_key(trade_id))


class Tick(NamedTuple):
    """One trade as candles see it."""

    ts: int
    price: Decimal
    size: Decimal
    venue: str
    trade_id: str

    def key(self) -> OrderKey:
        return (self.ts, self.venue, trade_id_key(self.trade_id))


@dataclass(slots=True)
class Candle:
    """One bucket. ``open_key``/``close_key`` are the order keys of its first
    and last trade, kept so that candles merge exactly (venues, roll-ups,
    stored rows updated by later batches)."""

    timestamp: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    open_key: OrderKey
    close_key: OrderKey

    @classmethod
    def first(cls, bucket: int, price: Decimal, size: Decimal, key: OrderKey) -> Candle:
        return cls(bucket, price, price, price, price, size, 1, key, key)

    def add(self, price: Decimal, size: Decimal, key: OrderKey) -> None:
        """Account for one more trade (call under ``localcontext(EXACT)``)."""
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.volume += size
        self.trades += 1
        if key < self.open_key:
            self.open, self.open_key = price, key
        elif key > self.close_key:
            self.close, self.close_key = price, key

    def merge(self, other: Candle) -> None:
        """Absorb the trades of another candle of the same (or a contained)
        bucket; the two must share no trade (call under ``localcontext(EXACT)``)."""
        if other.high > self.high:
            self.high = other.high
        if other.low < self.low:
            self.low = other.low
        self.volume += other.volume
        self.trades += other.trades
        if other.open_key < self.open_key:
            self.open, self.open_key = other.open, other.open_key
        if other.close_key > self.close_key:
            self.close, self.close_key = other.close, other.close_key

    def copy(self, timestamp: int | None = None) -> Candle:
        return Candle(
            self.timestamp if timestamp is None else timestamp,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.trades,
            self.open_key,
            self.close_key,
        )

    def as_dict(self) -> dict[str, Any]:
        """``{timestamp, open, high, low, close, volume, trades}`` with Decimals."""
        return {
            "timestamp": self.timestamp,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "trades": self.trades,
        }

    def to_wire(self) -> dict[str, Any]:
        """The wire form: prices and volume as JSON numbers (PROTOCOL.md)."""
        return {
            "timestamp": self.timestamp,
            "open": float(self.open),
            "high": float(self.high),
            "low": float(self.low),
            "close": float(self.close),
            "volume": float(self.volume),
            "trades": self.trades,
        }


def aggregate_ticks(ticks: Iterable[Tick], resolution_ms: int) -> list[Candle]:
    """Candles of the non-empty buckets, oldest first; ticks in any order."""
    buckets: dict[int, Candle] = {}
    with localcontext(EXACT):
        for tick in ticks:
            ts = tick.ts
            start = ts - ts % resolution_ms
            key = (ts, tick.venue, trade_id_key(tick.trade_id))
            candle = buckets.get(start)
            if candle is None:
                buckets[start] = Candle.first(start, tick.price, tick.size, key)
            else:
                candle.add(tick.price, tick.size, key)
    return [buckets[start] for start in sorted(buckets)]


def rollup(candles: Iterable[Candle], resolution_ms: int) -> list[Candle]:
    """Merge candles into buckets of ``resolution_ms`` (which their own
    resolution must divide), oldest first. With their own resolution this
    merges series of several venues into one. Inputs are not modified."""
    buckets: dict[int, Candle] = {}
    with localcontext(EXACT):
        for candle in candles:
            start = candle.timestamp - candle.timestamp % resolution_ms
            merged = buckets.get(start)
            if merged is None:
                buckets[start] = candle.copy(start)
            else:
                merged.merge(candle)
    return [buckets[start] for start in sorted(buckets)]


# --- rows as read from a database -------------------------------------------------
#
# Queries convert as little as they can: prices stay in the driver's type
# (exact doubles on SQLite, Decimals on PostgreSQL; either orders correctly)
# until a bucket's final open/high/low/close are known, volumes become
# Decimals once per row for the exact sum, and trade-id keys are computed
# only to break a tie of timestamp and venue.

Convert = Callable[[Any], Decimal]


def _earlier(ts: int, venue: str, trade_id: str, other_ts: int, other_venue: str, other_id: str) -> bool:
    if ts != other_ts:
        return ts < other_ts
    if venue != other_venue:
        return venue < other_venue
    return trade_id_key(trade_id) < trade_id_key(other_id)


def _finish(buckets: dict[int, list[Any]], price: Convert) -> list[Candle]:
    out = []
    for start in sorted(buckets):
        o, h, lo, c, volume, trades, ots, ovenue, oid, cts, cvenue, cid = buckets[start]
        out.append(
            Candle(
                start,
                price(o),
                price(h),
                price(lo),
                price(c),
                volume,
                trades,
                (ots, ovenue, trade_id_key(oid)),
                (cts, cvenue, trade_id_key(cid)),
            )
        )
    return out


def aggregate_trade_rows(
    rows: Iterable[tuple[Any, ...]], resolution_ms: int, venues: Mapping[Any, str], price: Convert, size: Convert
) -> list[Candle]:
    """Candles from trade rows ``(ts, price, size, venue id, trade id)`` in
    any order, ``venues`` mapping venue ids to codes; same result as
    ``aggregate_ticks`` on the converted trades."""
    buckets: dict[int, list[Any]] = {}
    with localcontext(EXACT):
        for ts, p, amount, venue_id, trade_id in rows:
            venue = venues[venue_id]
            start = ts - ts % resolution_ms
            acc = buckets.get(start)
            if acc is None:
                buckets[start] = [p, p, p, p, size(amount), 1, ts, venue, trade_id, ts, venue, trade_id]
                continue
            if p > acc[1]:
                acc[1] = p
            elif p < acc[2]:
                acc[2] = p
            acc[4] += size(amount)
            acc[5] += 1
            if ts > acc[9] or (ts == acc[9] and _earlier(acc[9], acc[10], acc[11], ts, venue, trade_id)):
                acc[3], acc[9], acc[10], acc[11] = p, ts, venue, trade_id
            elif ts < acc[6] or (ts == acc[6] and _earlier(ts, venue, trade_id, acc[6], acc[7], acc[8])):
                acc[0], acc[6], acc[7], acc[8] = p, ts, venue, trade_id
    return _finish(buckets, price)


def rollup_candle_rows(
    rows: Iterable[tuple[Any, ...]], resolution_ms: int, venues: Mapping[Any, str], price: Convert, volume: Convert
) -> list[Candle]:
    """Candles from stored candle rows ``(bucket, open, high, low, close,
    volume, trades, open ts, open trade id, close ts, close trade id, venue
    id)`` of one resolution dividing ``resolution_ms``, several venues
    allowed; same result as ``rollup`` on the converted candles."""
    buckets: dict[int, list[Any]] = {}
    with localcontext(EXACT):
        for bucket, o, h, lo, c, v, trades, ots, oid, cts, cid, venue_id in rows:
            venue = venues[venue_id]
            start = bucket - bucket % resolution_ms
            acc = buckets.get(start)
            if acc is None:
                buckets[start] = [o, h, lo, c, volume(v), trades, ots, venue, oid, cts, venue, cid]
                continue
            if h > acc[1]:
                acc[1] = h
            if lo < acc[2]:
                acc[2] = lo
            acc[4] += volume(v)
            acc[5] += trades
            if ots < acc[6] or (ots == acc[6] and _earlier(ots, venue, oid, acc[6], acc[7], acc[8])):
                acc[0], acc[6], acc[7], acc[8] = o, ots, venue, oid
            if cts > acc[9] or (cts == acc[9] and _earlier(acc[9], acc[10], acc[11], cts, venue, cid)):
                acc[3], acc[9], acc[10], acc[11] = c, cts, venue, cid
    return _finish(buckets, price)


def aggregate_time_ordered(ticks: list[Tick], resolution_ms: int) -> list[Candle]:
    """``aggregate_ticks`` for ticks sorted by timestamp (ties in any
    order), in one pass: a trade opens a bucket or is its new close, and the
    full order key is computed only for trades of the same millisecond as
    the bucket's open or close."""
    out: list[Candle] = []
    candle: Candle | None = None
    end = -1
    with localcontext(EXACT):
        for tick in ticks:
            ts, price = tick.ts, tick.price
            if ts >= end:
                start = ts - ts % resolution_ms
                end = start + resolution_ms
                key = (ts, tick.venue, trade_id_key(tick.trade_id))
                candle = Candle(start, price, price, price, price, tick.size, 1, key, key)
                out.append(candle)
                continue
            assert candle is not None
            if price > candle.high:
                candle.high = price
            elif price < candle.low:
                candle.low = price
            candle.volume += tick.size
            candle.trades += 1
            if ts > candle.close_key[0]:
                candle.close, candle.close_key = price, (ts, tick.venue, trade_id_key(tick.trade_id))
                continue
            key = (ts, tick.venue, trade_id_key(tick.trade_id))
            if key > candle.close_key:
                candle.close, candle.close_key = price, key
            elif key < candle.open_key:
                candle.open, candle.open_key = price, key
    return out


def stored_rollups(ticks: list[Tick]) -> dict[str, list[Candle]]:
    """Candles of every stored resolution from ticks sorted by timestamp:
    1s from the ticks, each coarser one from the previous (every stored
    resolution divides the next)."""
    out: dict[str, list[Candle]] = {}
    previous: list[Candle] | None = None
    for name in STORED_RESOLUTIONS:
        size = RESOLUTION_MS[name]
        previous = aggregate_time_ordered(ticks, size) if previous is None else rollup(previous, size)
        out[name] = previous
    return out


class CandleBuilder:
    """The forming candle of one series (a symbol over all venues, or over
    some) at several resolutions, updated trade by trade in memory.

    A trade in a newer bucket than the forming one closes it and starts a new
    one. A trade older than the forming bucket of a resolution is not applied
    to that resolution (a chart cannot move back; the stored candles still
    count it) and is counted in ``late_trades``. Applying the same trade twice
    counts it twice: feed it only trades that ingestion reported as new.
    """

    def __init__(self, resolutions: Iterable[str] = RESOLUTIONS) -> None:
        self._sizes = [(name, RESOLUTION_MS[name]) for name in resolutions]
        self._forming: dict[str, Candle] = {}
        self.late_trades = 0

    def apply(self, tick: Tick) -> list[tuple[str, Candle]]:
        """Apply one trade; returns ``(resolution, final candle)`` for every
        bucket this trade closed. Forming candles are updated in place: read
        them with ``forming`` and copy before handing them to another task."""
        closed: list[tuple[str, Candle]] = []
        ts = tick.ts
        key = (ts, tick.venue, trade_id_key(tick.trade_id))
        with localcontext(EXACT):
            for name, size in self._sizes:
                start = ts - ts % size
                candle = self._forming.get(name)
                if candle is None or start > candle.timestamp:
                    if candle is not None:
                        closed.append((name, candle))
                    self._forming[name] = Candle.first(start, tick.price, tick.size, key)
                elif start == candle.timestamp:
                    candle.add(tick.price, tick.size, key)
                else:
                    self.late_trades += 1
        return closed

    def forming(self, resolution: str) -> Candle | None:
        return self._forming.get(resolution)

    def seed(self, resolution: str, candle: Candle) -> None:
        """Continue from a stored candle (e.g. the forming bucket read from the
        database on join) unless a newer bucket is already forming. Trades
        already counted in it must not be applied again."""
        current = self._forming.get(resolution)
        if current is None or candle.timestamp >= current.timestamp:
            self._forming[resolution] = candle.copy()

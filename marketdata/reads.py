"""Candle queries: stored candles for resolutions of 1s and coarser, trades
for sub-second ones, venues merged with the order of ``marketdata.candles``;
Decimals out (the handler converts to JSON numbers at the wire edge). And
the consistent snapshots a live chart starts from (``live_seed``,
``live_history``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from marketdata.candles import Candle, aggregate_trade_rows, rollup_candle_rows
from marketdata.listings import instrument_id, venue_codes
from marketdata.models import Candle as StoredCandle
from marketdata.models import Trade, TradeSeries
from marketdata.resolutions import RESOLUTION_MS, RESOLUTIONS, bucket_start, source_resolution
from marketdata.storage import CANDLE_READ, amount_column, price_converter, table_name
from marketdata.windows import Window, WindowError, resolve_window, span_window
from realtime.protocol import now_ms


@dataclass(frozen=True)
class CandleSeries:
    symbol: str
    resolution: str
    window: Window
    candles: list[Candle]


def _venue_filter(venue_ids: list[int] | None, params: list[Any]) -> str:
    if venue_ids is None:
        return ""
    params.extend(venue_ids)
    return f" AND venue_id IN ({', '.join(['%s'] * len(venue_ids))})"


def _stored_candles(instrument: int, resolution: str, venue_ids: list[int] | None, window: Window) -> list[Candle]:
    source = source_resolution(resolution)
    assert source is not None
    size = RESOLUTION_MS[resolution]
    table = table_name(StoredCandle)
    quote = connection.ops.quote_name
    read = ", ".join(amount_column(column) if column == "volume" else quote(column) for column in CANDLE_READ)
    # Rows of a finer stored resolution cover the last bucket to its end.
    params: list[Any] = [instrument, source, window.start_ms, bucket_start(window.end_ms - 1, size) + size]
    venue_filter = _venue_filter(venue_ids, params)
    sql = (
        f"SELECT {read}, venue_id FROM {table} WHERE instrument_id = %s AND resolution = %s "  # noqa: S608
        f"AND bucket >= %s AND bucket < %s{venue_filter}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # Venue codes read after the rows name every venue id found in them.
    return rollup_candle_rows(rows, size, venue_codes(None), price_converter(), Decimal)


def _candles_from_trades(instrument: int, resolution: str, venue_ids: list[int] | None, window: Window) -> list[Candle]:
    size = RESOLUTION_MS[resolution]
    table = table_name(Trade)
    # The last bucket is whole even where it reaches past the window's end.
    params: list[Any] = [instrument, window.start_ms, bucket_start(window.end_ms - 1, size) + size]
    venue_filter = _venue_filter(venue_ids, params)
    sql = (
        f"SELECT ts, price, {amount_column('size')}, venue_id, trade_id FROM {table} "  # noqa: S608
        f"WHERE instrument_id = %s AND ts >= %s AND ts < %s{venue_filter}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return aggregate_trade_rows(rows, size, venue_codes(None), price_converter(), Decimal)


def load_candles(
    symbol: str, resolution: str, *, venues: Iterable[str] | None = None, start_ms: int, end_ms: int
) -> list[Candle]:
    """Candles (with the order keys of their open and close trades) whose
    timestamp is in [start_ms, end_ms), oldest first, empty buckets omitted;
    all venues merged unless ``venues`` names some. Raises UnknownSymbol,
    UnknownVenue, WindowError, TooManyCandles."""
    if resolution not in RESOLUTION_MS:
        raise WindowError("unknown resolution", {"resolution": [f"Expected one of {' '.join(RESOLUTIONS)}."]})
    window = span_window(resolution, start_ms, end_ms)
    instrument = instrument_id(symbol)
    venue_ids = None if venues is None else sorted(venue_codes(venues))
    if window.buckets == 0:
        return []
    source = _candles_from_trades if source_resolution(resolution) is None else _stored_candles
    return source(instrument, resolution, venue_ids, window)


def aggregate_candles(
    symbol: str, resolution: str, *, venues: Iterable[str] | None = None, start_ms: int, end_ms: int
) -> list[dict[str, Any]]:
    """``{timestamp, open, high, low, close, volume, trades}`` (Decimals) for
    every non-empty bucket whose open time is in [start_ms, end_ms)."""
    return [
        candle.as_dict() for candle in load_candles(symbol, resolution, venues=venues, start_ms=start_ms, end_ms=end_ms)
    ]


def fetch_candles(
    symbol: str,
    resolution: str,
    *,
    venues: Iterable[str] | None = None,
    window: Any = None,
    at_ms: int | None = None,
) -> CandleSeries:
    """What ``request_market_data`` answers: ``window`` is None (the last
    DEFAULT_CANDLES buckets), a duration string or {from, to}; durations end
    at ``at_ms`` (default: now)."""
    resolved = resolve_window(window, resolution, now_ms() if at_ms is None else at_ms)
    candles = load_candles(symbol, resolution, venues=venues, start_ms=resolved.start_ms, end_ms=resolved.end_ms)
    return CandleSeries(symbol, resolution, resolved, candles)


def forming_candle(
    symbol: str, resolution: str, *, venues: Iterable[str] | None = None, at_ms: int | None = None
) -> Candle | None:
    """The stored state of the bucket containing ``at_ms`` (default now), or
    None if it has no trade yet: where a live CandleBuilder starts."""
    at = now_ms() if at_ms is None else at_ms
    start = bucket_start(at, RESOLUTION_MS[resolution])
    candles = load_candles(symbol, resolution, venues=venues, start_ms=start, end_ms=start + 1)
    return candles[0] if candles else None


@contextmanager
def _one_snapshot() -> Iterator[None]:
    """Every read inside sees one database snapshot (SQLite's IMMEDIATE
    transaction already is one: no writer commits while it runs)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql" and outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def _series_summaries(symbol: str) -> tuple[dict[str, int], int | None]:
    """Per venue code, the highest Trade id stored for ``symbol``; and the
    latest exchange timestamp over all venues (None without trades)."""
    rows = TradeSeries.objects.filter(instrument_id=instrument_id(symbol)).values_list(
        "venue__code", "last_row_id", "last_ts"
    )
    watermarks = {venue: row_id for venue, row_id, _ in rows}
    return watermarks, max((ts for _, _, ts in rows), default=None)


def live_seed(symbol: str, resolution: str, *, since_ms: int = 0) -> tuple[Candle | None, dict[str, int]]:
    """Where a live chart of all venues starts: the stored candle of
    ``resolution`` whose bucket holds the symbol's latest trade, if that
    trade is not older than ``since_ms`` (else None), and, per venue code,
    the highest Trade id it counts, read in one snapshot. Apply exactly the
    published NewTrades whose watermark is above their venue's entry here.
    (The latest trade's bucket, not the current time's: trades of a bucket
    that has just ended may still be committing, and must add to its stored
    state, not start it again.)"""
    with _one_snapshot():
        watermarks, latest = _series_summaries(symbol)
        recent = latest is not None and latest >= since_ms
        forming = forming_candle(symbol, resolution, at_ms=latest) if recent else None
    return forming, watermarks


def live_history(symbol: str, resolution: str, *, start_ms: int, end_ms: int) -> tuple[list[Candle], dict[str, int]]:
    """Stored candles of all venues in [start_ms, end_ms) and the watermarks
    (as ``live_seed``) of the trades they count, read in one snapshot: a live
    chart that has applied every published trade up to those watermarks
    holds at least the stored state of each of its in-memory buckets."""
    with _one_snapshot():
        watermarks, _ = _series_summaries(symbol)
        candles = load_candles(symbol, resolution, start_ms=start_ms, end_ms=end_ms)
    return candles, watermarks

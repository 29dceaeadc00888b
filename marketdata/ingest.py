"""Ingestion: trades in, idempotent, with exact candle roll-ups.

``ingest_trades`` validates a batch, inserts it in bulk ignoring trades
already stored, and updates the stored candles (1s and coarser, per venue)
with exactly the trades it inserted, in the same transaction: on
PostgreSQL with COPY and one set-based statement (``marketdata.ingest_sql``);
on SQLite with executemany, and candles built in Python and merged into the
stored ones by one upsert (exact volumes are text there, added by a
registered function). Writers of one (instrument, venue) are serialised, so
that its series summary and the trades a batch reports as new are exact:
by SQLite's single writer (transactions begin IMMEDIATE),
and on PostgreSQL by a transaction-level advisory lock per (instrument,
venue), taken in a fixed order before anything is written. The new trades
reach live charts after commit (``marketdata.publish``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact
from operator import attrgetter
from typing import Any

from django.db import connection, transaction

from marketdata.candles import Tick, stored_rollups
from marketdata.errors import InvalidTrades
from marketdata.ingest_sql import insert_with_candles, upsert_candles_sqlite
from marketdata.listings import Listing, resolve_listings
from marketdata.models import Candle as StoredCandle
from marketdata.models import Trade, TradeSeries
from marketdata.publish import publish_after_commit
from marketdata.storage import CANDLE_COLUMNS, candle_params, table_name
from marketdata.trades import NewTrades, TradeInput
from marketdata.windows import MAX_TIMESTAMP_MS

MAX_SIGNIFICANT_DIGITS = 15
MAX_DECIMAL_PLACES = 18
MAX_INTEGER_DIGITS = 20
SIDES = ("buy", "sell")  # a tuple: membership needs no hashing of arbitrary input
_SIGNIFICANT = Context(prec=MAX_SIGNIFICANT_DIGITS, traps=[Inexact])
_PLACES = Context(prec=MAX_SIGNIFICANT_DIGITS + MAX_DECIMAL_PLACES + MAX_INTEGER_DIGITS, traps=[Inexact])
_LAST_PLACE = Decimal(1).scaleb(-MAX_DECIMAL_PLACES)
_UNSEEN = object()


def _decimal_problem(value: Any) -> str | None:
    """Why a price or size cannot be stored exactly, or None."""
    if type(value) is not Decimal:
        return "Expected a decimal number."
    if not value.is_finite():
        return "Expected a finite number."
    if value <= 0:
        return "Must be positive."
    adjusted = value.adjusted()  # exponent of the leading digit
    if adjusted >= MAX_INTEGER_DIGITS:
        return f"At most {MAX_INTEGER_DIGITS} digits before the decimal point."
    try:
        _SIGNIFICANT.plus(value)
    except Inexact:
        return f"At most {MAX_SIGNIFICANT_DIGITS} significant digits."
    if adjusted - (MAX_SIGNIFICANT_DIGITS - 1) >= -MAX_DECIMAL_PLACES:
        return None  # even 15 digits from the leading one stay within the places
    try:
        _PLACES.quantize(value, _LAST_PLACE)
    except Inexact:
        return f"At most {MAX_DECIMAL_PLACES} decimal places."
    return None


def _trade_problems(trade: TradeInput) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    if type(trade.trade_id) is not str or not 0 < len(trade.trade_id) <= 64:
        problems["id"] = ["Expected a string of 1 to 64 characters."]
    if type(trade.ts) is not int or not 0 <= trade.ts <= MAX_TIMESTAMP_MS:
        problems["timestamp"] = [f"Expected epoch milliseconds, 0..{MAX_TIMESTAMP_MS}."]
    for field, value in (("price", trade.price), ("size", trade.size)):
        problem = _decimal_problem(value)
        if problem:
            problems[field] = [problem]
    if trade.side not in SIDES:
        problems["side"] = ["Expected buy or sell."]
    return problems


@dataclass(frozen=True)
class IngestResult:
    received: int
    inserted: int
    series: list[NewTrades]

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted

    @property
    def new_trades(self) -> dict[str, list[Tick]]:
        """The new trades per symbol (all venues), in timestamp order."""
        out: dict[str, list[Tick]] = defaultdict(list)
        for series in self.series:
            out[series.symbol].extend(series.ticks)
        for ticks in out.values():
            ticks.sort(key=attrgetter("ts"))
        return dict(out)


_TRADE_COLUMNS = ("venue_id", "instrument_id", "trade_id", "ts", "price", "size", "side")
TradeKey = tuple[int, int, str]


SeriesKey = tuple[int, int]  # (venue id, instrument id)


def _insert_trades(rows: list[tuple[Any, ...]]) -> tuple[set[TradeKey] | None, dict[SeriesKey, int]]:
    """Insert, skipping trades already stored. Returns the keys (venue,
    instrument, trade id) inserted, or None when every row was, and the
    highest new Trade id per series. On PostgreSQL the same statement
    updates the stored candles (``marketdata.ingest_sql``); on SQLite the
    caller does (``_update_candles``)."""
    table = table_name(Trade)
    columns = ", ".join(_TRADE_COLUMNS)
    conflict = "ON CONFLICT (venue_id, instrument_id, trade_id) DO NOTHING"
    highest: dict[SeriesKey, int] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            stored, highest = insert_with_candles(cursor, table, table_name(StoredCandle), rows)
            if not stored:
                return None, highest
            return {(row[0], row[1], row[2]) for row in rows} - stored, highest
        # SQLite: one writer at a time and AUTOINCREMENT ids, so the rows
        # with an id above the previous maximum are exactly this insert's.
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")  # noqa: S608
        before = cursor.fetchone()[0]
        placeholders = ", ".join(["%s"] * len(_TRADE_COLUMNS))
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) {conflict}", rows)  # noqa: S608
        everything = cursor.rowcount == len(rows)
        # NOT INDEXED: otherwise SQLite serves the GROUP BY by scanning the
        # whole unique index (venue, instrument, trade id), a cost growing
        # with the table (65 ms at a million trades) on every ingestion; the
        # rowid range of the new rows is still used.
        cursor.execute(
            f"SELECT venue_id, instrument_id, MAX(id) FROM {table} NOT INDEXED WHERE id > %s "  # noqa: S608
            "GROUP BY venue_id, instrument_id",
            [before],
        )
        highest = {(venue, instrument): row_id for venue, instrument, row_id in cursor.fetchall()}
        if everything:
            return None, highest
        cursor.execute(f"SELECT venue_id, instrument_id, trade_id FROM {table} WHERE id > %s", [before])  # noqa: S608
        return {(venue, instrument, trade_id) for venue, instrument, trade_id in cursor.fetchall()}, highest


def _update_series(new: list[NewTrades], listings: list[Listing]) -> None:
    """Fold newly stored trades (each series' ticks in time order) into the
    series summaries, one upsert for all (under the series' locks)."""
    table = table_name(TradeSeries)
    rows = [
        (
            listing.instrument_id,
            listing.venue_id,
            len(batch.ticks),
            batch.ticks[0].ts,
            batch.ticks[-1].ts,
            batch.watermark,
        )
        for batch, listing in zip(new, listings, strict=True)
    ]
    earlier, later = "EXCLUDED.first_ts < cur.first_ts", "EXCLUDED.last_ts > cur.last_ts"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} AS cur (instrument_id, venue_id, trades, first_ts, last_ts, last_row_id) "  # noqa: S608
            f"VALUES {', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(rows))} "
            f"ON CONFLICT (instrument_id, venue_id) DO UPDATE SET trades = cur.trades + EXCLUDED.trades, "
            f"first_ts = CASE WHEN {earlier} THEN EXCLUDED.first_ts ELSE cur.first_ts END, "
            f"last_ts = CASE WHEN {later} THEN EXCLUDED.last_ts ELSE cur.last_ts END, "
            f"last_row_id = CASE WHEN EXCLUDED.last_row_id > cur.last_row_id "
            f"THEN EXCLUDED.last_row_id ELSE cur.last_row_id END",
            [value for row in rows for value in row],
        )


def _lock_series(pairs: Iterable[tuple[int, int]]) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite: the IMMEDIATE transaction already holds the only write lock
    with connection.cursor() as cursor:
        for instrument, venue in sorted(pairs):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"marketdata.series:{instrument}:{venue}"])


def _update_candles(instrument: int, venue: int, ticks: list[Tick]) -> int:
    """SQLite: the candles of newly stored trades (in time order) at every
    stored resolution, merged into the stored ones by one upsert
    (``ingest_sql.upsert_candles_sqlite``); returns the number of candles
    written. PostgreSQL does this in the insert's statement."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in CANDLE_COLUMNS)
    rows = [
        [instrument, venue, resolution, candle.timestamp, *candle_params(candle, True)]
        for resolution, candles in stored_rollups(ticks).items()
        for candle in candles
    ]
    with connection.cursor() as cursor:
        upsert_candles_sqlite(cursor, table_name(StoredCandle), columns, rows)
    return len(rows)


def _rows_to_store(batch: list[TradeInput]) -> dict[TradeKey, tuple[tuple[Any, ...], Tick, Listing]]:
    """The batch's rows to insert, by key, once each (a trade repeated in
    the batch counts once), with its Tick and listing; raises InvalidTrades
    naming every invalid trade (at most about 100 fields)."""
    listings, known_venues = resolve_listings(batch)
    # SQLite gets floats: the column stores a double anyway, and Python's
    # conversion is correctly rounded.
    sqlite = connection.vendor == "sqlite"
    problem = _decimal_problem
    # Prices and sizes repeat within a batch: each distinct value is checked
    # (and converted) once. Equal Decimals pass or fail alike: every check
    # depends on the value only, not on trailing zeros.
    checked: dict[Decimal, Any] = {}
    errors: dict[str, list[str]] = {}
    rows: dict[TradeKey, tuple[tuple[Any, ...], Tick, Listing]] = {}
    for index, trade in enumerate(batch):
        venue_code, symbol, trade_id, ts, price, size, side = trade
        try:
            listing = listings.get((venue_code, symbol))
        except TypeError:  # unhashable input
            listing = None
        db_price = db_size = None
        if type(price) is Decimal and type(size) is Decimal and price.is_finite() and size.is_finite():
            db_price = checked.get(price, _UNSEEN)
            if db_price is _UNSEEN:
                db_price = checked[price] = None if problem(price) else float(price) if sqlite else price
            db_size = checked.get(size, _UNSEEN)
            if db_size is _UNSEEN:
                db_size = checked[size] = None if problem(size) else float(size) if sqlite else size
        if (
            listing is None
            or db_price is None
            or db_size is None
            or type(ts) is not int
            or not 0 <= ts <= MAX_TIMESTAMP_MS
            or side not in SIDES
            or type(trade_id) is not str
            or not 0 < len(trade_id) <= 64
        ):
            problems = _trade_problems(trade)
            if listing is None and isinstance(venue_code, str) and venue_code in known_venues:
                problems["symbol"] = [f"Unknown symbol {str(symbol)[:50]!r} on {venue_code}."]
            elif listing is None:
                problems["venue"] = [f"Unknown venue {str(venue_code)[:40]!r}."]
            if len(errors) < 100:
                errors.update({f"{index}.{field}": messages for field, messages in problems.items()})
            continue
        venue_id, instrument_id = listing.venue_id, listing.instrument_id
        key = (venue_id, instrument_id, trade_id)
        if key not in rows:
            rows[key] = (
                (venue_id, instrument_id, trade_id, ts, db_price, db_size, side),
                Tick(ts, price, size, listing.venue, trade_id),
                listing,
            )
    if errors:
        raise InvalidTrades(errors)
    return rows


@transaction.atomic
def ingest_trades(trades: Iterable[TradeInput], *, publish: bool = True) -> IngestResult:
    """Store a batch of trades once each and update the stored candles with
    exactly the new ones. Idempotent: a trade already stored (same venue,
    instrument and trade id), or repeated in the batch, is counted as a
    duplicate and changes nothing. An invalid trade (unknown venue or symbol,
    bad number, side or timestamp) rejects the whole batch (InvalidTrades).
    With ``publish`` the new trades reach live charts after commit
    (``marketdata.publish``); bulk imports of history pass False."""
    batch = trades if isinstance(trades, list) else list(trades)
    if not batch:
        return IngestResult(0, 0, [])
    rows = _rows_to_store(batch)

    _lock_series({(listing.instrument_id, listing.venue_id) for _, _, listing in rows.values()})
    inserted, highest = _insert_trades([row for row, _, _ in rows.values()])

    sqlite = connection.vendor == "sqlite"
    grouped: dict[Listing, list[Tick]] = defaultdict(list)
    for key, (_, tick, listing) in rows.items():
        if inserted is None or key in inserted:
            grouped[listing].append(tick)
    series = []
    listings = sorted(grouped)
    for listing in listings:
        ticks = grouped[listing]
        ticks.sort(key=attrgetter("ts"))  # stored_rollups, the summary and the publish need time order
        last_row_id = highest[(listing.venue_id, listing.instrument_id)]
        if sqlite:  # PostgreSQL: done by the insert's statement
            _update_candles(listing.instrument_id, listing.venue_id, ticks)
        series.append(NewTrades(listing.symbol, listing.venue, last_row_id, ticks))
    if series:
        _update_series(series, listings)
    if publish and series:
        publish_after_commit(series)
    return IngestResult(len(batch), sum(len(ticks) for ticks in grouped.values()), series)

"""Market data services: trades in (idempotent, exact roll-ups), candles out.

Ingestion (``ingest_trades``) validates a batch, inserts it in bulk ignoring
trades already stored, and updates the stored candles (1s and coarser, per
venue) with exactly the trades it inserted, in the same transaction. Writers
of one (instrument, venue) are serialised so that the read-merge-write of its
candles is exact: by SQLite's single writer (transactions begin IMMEDIATE),
and on PostgreSQL by a transaction-level advisory lock per (instrument,
venue), taken in a fixed order before anything is written.

Queries (``aggregate_candles``, ``fetch_candles``) read stored candles for
resolutions of 1s and coarser, and trades for sub-second ones, merge venues
with the order of ``marketdata.candles`` and return Decimals; the handler
converts to JSON numbers at the wire edge.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, localcontext
from operator import attrgetter
from typing import Any, NamedTuple

from django.db import connection, transaction

from marketdata.candles import (
    EXACT,
    Candle,
    Tick,
    aggregate_trade_rows,
    rollup_candle_rows,
    stored_rollups,
    trade_id_key,
)
from marketdata.models import Candle as StoredCandle
from marketdata.models import Instrument, Trade, TradeSeries, Venue, VenueSymbol
from marketdata.resolutions import RESOLUTION_MS, RESOLUTIONS, bucket_start, source_resolution
from marketdata.symbols import split_symbol
from marketdata.trades import TradeInput
from marketdata.windows import MAX_TIMESTAMP_MS, TooManyCandles, Window, WindowError, resolve_window, span_window

__all__ = [
    "IngestResult",
    "NewTrades",
    "InvalidTrades",
    "MarketDataError",
    "TooManyCandles",
    "TradeInput",
    "UnknownSymbol",
    "UnknownVenue",
    "WindowError",
    "aggregate_candles",
    "ensure_listing",
    "fetch_candles",
    "forming_candle",
    "ingest_trades",
    "live_history",
    "live_seed",
    "load_candles",
]

# SQLite's NUMERIC affinity stores a double: 15 significant digits survive
# the round trip exactly, and the same limit holds on PostgreSQL so that both
# stacks accept the same trades.
MAX_SIGNIFICANT_DIGITS = 15
MAX_DECIMAL_PLACES = 18
MAX_INTEGER_DIGITS = 20
SIDES = ("buy", "sell")  # a tuple: membership needs no hashing of arbitrary input
_SIGNIFICANT = Context(prec=MAX_SIGNIFICANT_DIGITS, traps=[Inexact])
_PLACES = Context(prec=MAX_SIGNIFICANT_DIGITS + MAX_DECIMAL_PLACES + MAX_INTEGER_DIGITS, traps=[Inexact])
_LAST_PLACE = Decimal(1).scaleb(-MAX_DECIMAL_PLACES)


class MarketDataError(Exception):
    pass


class UnknownSymbol(MarketDataError):
    def __init__(self, symbol: str) -> None:
        super().__init__(f"unknown symbol {symbol[:50]!r}")
        self.symbol = symbol


class UnknownVenue(MarketDataError):
    def __init__(self, venues: Iterable[str]) -> None:
        self.venues = sorted(venues)
        super().__init__("unknown venue " + ", ".join(repr(v[:40]) for v in self.venues[:10]))


class InvalidTrades(MarketDataError):
    """Some trades of a batch are invalid; nothing of the batch was stored.
    ``errors`` maps ``"<index>.<field>"`` to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(f"{len({key.split('.')[0] for key in errors})} invalid trade(s); nothing was stored")
        self.errors = errors


@dataclass(frozen=True)
class NewTrades:
    """The trades one ingestion stored for one (symbol, venue), oldest first,
    and ``watermark``, the highest Trade id among them: publish these after
    commit; a live chart seeded by ``live_seed`` skips a batch whose
    watermark is not above its venue's."""

    symbol: str
    venue: str
    watermark: int
    ticks: list[Tick]


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


@dataclass(frozen=True)
class CandleSeries:
    symbol: str
    resolution: str
    window: Window
    candles: list[Candle]


# ---------------------------------------------------------------- listings


@transaction.atomic
def ensure_listing(
    venue: str, symbol: str, *, native: str | None = None, venue_name: str | None = None
) -> tuple[Venue, Instrument]:
    """The venue and instrument, created if missing; with ``native``, the
    venue's own symbol for the instrument is recorded (or updated)."""
    base, quote = split_symbol(symbol)
    venue_row, _ = Venue.objects.get_or_create(code=venue, defaults={"name": venue_name or venue.title()})
    instrument, _ = Instrument.objects.get_or_create(symbol=symbol, defaults={"base": base, "quote": quote})
    if native:
        mapping, created = VenueSymbol.objects.get_or_create(
            venue=venue_row, instrument=instrument, defaults={"native": native}
        )
        if not created and mapping.native != native:
            mapping.native = native
            mapping.save(update_fields=["native"])
    return venue_row, instrument


def instrument_id(symbol: str) -> int:
    found = Instrument.objects.filter(symbol=symbol).values_list("id", flat=True).first()
    if found is None:
        raise UnknownSymbol(symbol)
    return found


def _venue_codes(codes: Iterable[str] | None) -> dict[int, str]:
    """id -> code of the requested venues (all without ``codes``)."""
    if codes is None:
        return dict(Venue.objects.values_list("id", "code"))
    wanted = set(codes)
    found = dict(Venue.objects.filter(code__in=wanted).values_list("id", "code"))
    missing = wanted - set(found.values())
    if missing:
        raise UnknownVenue(missing)
    return found


# ---------------------------------------------------------------- ingestion


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


class Listing(NamedTuple):
    instrument_id: int
    venue_id: int
    venue: str
    symbol: str


def _listings(batch: list[TradeInput]) -> tuple[dict[tuple[str, str], Listing], set[str]]:
    """(venue code, symbol as given) -> Listing for the batch, and the venue
    codes that exist. A symbol is BASE-QUOTE, or else the venue's native
    symbol (VenueSymbol)."""
    pairs = {(trade[0], trade[1]) for trade in batch if type(trade[0]) is str and type(trade[1]) is str}
    venues = dict(Venue.objects.filter(code__in={code for code, _ in pairs}).values_list("code", "id"))
    canonical = dict(Instrument.objects.filter(symbol__in={symbol for _, symbol in pairs}).values_list("symbol", "id"))
    found: dict[tuple[str, str], Listing] = {}
    for code, symbol in pairs:
        if code in venues and symbol in canonical:
            found[(code, symbol)] = Listing(canonical[symbol], venues[code], code, symbol)
    unresolved = {pair for pair in pairs if pair not in found and pair[0] in venues}
    if unresolved:
        natives = VenueSymbol.objects.filter(
            venue__code__in={code for code, _ in unresolved}, native__in={symbol for _, symbol in unresolved}
        ).values_list("venue__code", "native", "instrument_id", "instrument__symbol")
        for code, native, instrument, symbol in natives:
            if (code, native) in unresolved:
                found[(code, native)] = Listing(instrument, venues[code], code, symbol)
    return found, set(venues)


def _table(model: Any) -> str:
    return str(connection.ops.quote_name(model._meta.db_table))


_TRADE_COLUMNS = ("venue_id", "instrument_id", "trade_id", "ts", "price", "size", "side")
TradeKey = tuple[int, int, str]


SeriesKey = tuple[int, int]  # (venue id, instrument id)


def _insert_trades(rows: list[tuple[Any, ...]]) -> tuple[set[TradeKey] | None, dict[SeriesKey, int]]:
    """Insert, skipping trades already stored. Returns the keys (venue,
    instrument, trade id) inserted, or None when every row was, and the
    highest new Trade id per series."""
    table = _table(Trade)
    columns = ", ".join(_TRADE_COLUMNS)
    conflict = "ON CONFLICT (venue_id, instrument_id, trade_id) DO NOTHING"
    highest: dict[SeriesKey, int] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY into a session temp table, then one INSERT ... SELECT whose
            # RETURNING lists exactly the rows this transaction inserted, even
            # with concurrent writers of the same trades.
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS marketdata_trade_incoming (venue_id bigint NOT NULL, "
                "instrument_id bigint NOT NULL, trade_id varchar(64) NOT NULL, ts bigint NOT NULL, "
                "price numeric(38, 18) NOT NULL, size numeric(38, 18) NOT NULL, side varchar(4) NOT NULL) "
                "ON COMMIT DELETE ROWS"
            )
            cursor.execute("TRUNCATE marketdata_trade_incoming")
            with cursor.cursor.copy(f"COPY marketdata_trade_incoming ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM marketdata_trade_incoming "  # noqa: S608
                f"{conflict} RETURNING id, venue_id, instrument_id, trade_id"
            )
            inserted: set[TradeKey] = set()
            for row_id, venue, instrument, trade_id in cursor.fetchall():
                inserted.add((venue, instrument, trade_id))
                if row_id > highest.get((venue, instrument), 0):
                    highest[(venue, instrument)] = row_id
            return (None if len(inserted) == len(rows) else inserted), highest
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


def _update_series(listing: Listing, ticks: list[Tick], last_row_id: int) -> None:
    """Fold newly stored trades into the series summary (under its lock)."""
    first_ts = min(tick.ts for tick in ticks)
    last_ts = max(tick.ts for tick in ticks)
    series = TradeSeries.objects.filter(instrument_id=listing.instrument_id, venue_id=listing.venue_id).first()
    if series is None:
        TradeSeries.objects.create(
            instrument_id=listing.instrument_id,
            venue_id=listing.venue_id,
            trades=len(ticks),
            first_ts=first_ts,
            last_ts=last_ts,
            last_row_id=last_row_id,
        )
        return
    series.trades += len(ticks)
    series.first_ts = min(series.first_ts, first_ts)
    series.last_ts = max(series.last_ts, last_ts)
    series.last_row_id = max(series.last_row_id, last_row_id)
    series.save(update_fields=["trades", "first_ts", "last_ts", "last_row_id"])


def _lock_series(pairs: Iterable[tuple[int, int]]) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite: the IMMEDIATE transaction already holds the only write lock
    with connection.cursor() as cursor:
        for instrument, venue in sorted(pairs):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"marketdata.series:{instrument}:{venue}"])


def _to_decimal(value: Any) -> Decimal:
    """A price or volume as read by the driver: Decimal on PostgreSQL; on
    SQLite a double (NUMERIC affinity), an integer, or text (volumes)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return _decimal_of_double(value)
    return Decimal(value)


def _decimal_of_double(value: Any) -> Decimal:
    """The decimal a SQLite NUMERIC column was given. Ingestion admits only
    values of at most 15 significant digits; distinct such decimals are
    distinct doubles, so the shortest repr that reads back as the stored
    double (Python's float repr) is that decimal."""
    return Decimal(repr(value)) if type(value) is float else Decimal(value)


def _same(value: Any) -> Any:
    return value


def _price_converter() -> Callable[[Any], Decimal]:
    """Driver value of a price -> Decimal for this database; on SQLite
    memoised for one query (prices repeat, and floats hash cheaply)."""
    if connection.vendor != "sqlite":
        return _same
    known: dict[Any, Decimal] = {}

    def convert(value: Any) -> Decimal:
        decimal = known.get(value)
        if decimal is None:
            decimal = known[value] = _decimal_of_double(value)
        return decimal

    return convert


def _amount_column(column: str) -> str:
    """SQL reading an amount (size, volume) so that ``Decimal(value)`` is
    exact: SQLite renders a double as text with at most 15 significant digits
    (or as its shortest round-trip form), which is the decimal ingested."""
    if connection.vendor == "sqlite":
        return f"CAST({connection.ops.quote_name(column)} AS TEXT)"
    return connection.ops.quote_name(column)


_CANDLE_COLUMNS = (
    "instrument_id",
    "venue_id",
    "resolution",
    "bucket",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trades",
    "open_ts",
    "open_trade_id",
    "close_ts",
    "close_trade_id",
)
_CANDLE_READ = (
    "bucket",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trades",
    "open_ts",
    "open_trade_id",
    "close_ts",
    "close_trade_id",
)


def _candle_from_row(row: tuple[Any, ...], venue: str) -> Candle:
    bucket, open_, high, low, close, volume, trades, open_ts, open_id, close_ts, close_id = row
    return Candle(
        bucket,
        _to_decimal(open_),
        _to_decimal(high),
        _to_decimal(low),
        _to_decimal(close),
        _to_decimal(volume),
        trades,
        (open_ts, venue, trade_id_key(open_id)),
        (close_ts, venue, trade_id_key(close_id)),
    )


def _candle_params(candle: Candle, sqlite: bool) -> list[Any]:
    """open .. close_trade_id as database parameters. On SQLite prices go as
    floats (the column stores a double; candle prices are trade prices, at
    most 15 significant digits) and the volume as exact text."""
    open_key, close_key = candle.open_key, candle.close_key
    if sqlite:
        return [
            float(candle.open),
            float(candle.high),
            float(candle.low),
            float(candle.close),
            format(candle.volume, "f"),
            candle.trades,
            open_key[0],
            open_key[2][2],
            close_key[0],
            close_key[2][2],
        ]
    return [
        candle.open,
        candle.high,
        candle.low,
        candle.close,
        candle.volume,
        candle.trades,
        open_key[0],
        open_key[2][2],
        close_key[0],
        close_key[2][2],
    ]


def _stored_rows(
    cursor: Any, read: str, instrument: int, venue: int, resolution: str, candles: list[Candle]
) -> list[tuple[Any, ...]]:
    """The stored rows of the buckets ``candles`` touch: one range read when
    they are dense, else by bucket, so that a late trade next to a recent one
    does not read every row in between."""
    table = _table(StoredCandle)
    where = f"SELECT {read} FROM {table} WHERE instrument_id = %s AND resolution = %s AND venue_id = %s"  # noqa: S608
    first, last = candles[0].timestamp, candles[-1].timestamp
    if (last - first) // RESOLUTION_MS[resolution] < 4 * len(candles):
        cursor.execute(f"{where} AND bucket >= %s AND bucket <= %s", [instrument, resolution, venue, first, last])
        return list(cursor.fetchall())
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(candles), 500):
        buckets = [candle.timestamp for candle in candles[start : start + 500]]
        cursor.execute(
            f"{where} AND bucket IN ({', '.join(['%s'] * len(buckets))})", [instrument, resolution, venue, *buckets]
        )
        rows.extend(cursor.fetchall())
    return rows


def _update_candles(instrument: int, venue: int, venue_code: str, ticks: list[Tick]) -> int:
    """Merge the candles of newly stored trades into the stored roll-ups;
    returns the number of candle rows written."""
    table = _table(StoredCandle)
    quote = connection.ops.quote_name
    read = ", ".join(quote(column) for column in ("id", *_CANDLE_READ))
    values = _CANDLE_COLUMNS[4:]
    columns = ", ".join(quote(column) for column in _CANDLE_COLUMNS)
    insert = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(_CANDLE_COLUMNS))})"  # noqa: S608
    update = f"UPDATE {table} SET {', '.join(f'{quote(column)} = %s' for column in values)} WHERE id = %s"  # noqa: S608
    sqlite = connection.vendor == "sqlite"
    inserts: list[list[Any]] = []
    updates: list[list[Any]] = []
    with connection.cursor() as cursor:
        for resolution, candles in stored_rollups(ticks).items():
            stored = {
                row[1]: (row[0], _candle_from_row(row[1:], venue_code))
                for row in _stored_rows(cursor, read, instrument, venue, resolution, candles)
            }
            with localcontext(EXACT):
                for candle in candles:
                    previous = stored.get(candle.timestamp)
                    if previous is None:
                        inserts.append(
                            [instrument, venue, resolution, candle.timestamp, *_candle_params(candle, sqlite)]
                        )
                    else:
                        candle.merge(previous[1])
                        updates.append([*_candle_params(candle, sqlite), previous[0]])
        if inserts and not sqlite:
            # Buckets not stored yet (the series' writers are serialised, so
            # none can appear meanwhile): one COPY instead of one statement
            # per row, which made candles most of PostgreSQL's ingestion time.
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in inserts:
                    copy.write_row(row)
        elif inserts:
            cursor.executemany(insert, inserts)
        if updates:
            cursor.executemany(update, updates)
    return len(inserts) + len(updates)


@transaction.atomic
def ingest_trades(trades: Iterable[TradeInput], *, publish: bool = True) -> IngestResult:
    """Store a batch of trades once each and update the stored candles with
    exactly the new ones. Idempotent: a trade already stored (same venue,
    instrument and trade id), or repeated in the batch, is counted as a
    duplicate and changes nothing. An invalid trade (unknown venue or symbol,
    bad number, side or timestamp) rejects the whole batch (InvalidTrades).
    With ``publish`` the new trades reach live charts after commit
    (``marketdata.live``); bulk imports of history pass False."""
    batch = trades if isinstance(trades, list) else list(trades)
    if not batch:
        return IngestResult(0, 0, [])
    listings, known_venues = _listings(batch)
    # SQLite gets floats: the column stores a double anyway, and Python's
    # conversion is correctly rounded.
    sqlite = connection.vendor == "sqlite"
    problem = _decimal_problem
    errors: dict[str, list[str]] = {}
    rows: dict[TradeKey, tuple[tuple[Any, ...], Tick, Listing]] = {}
    for index, trade in enumerate(batch):
        venue_code, symbol, trade_id, ts, price, size, side = trade
        try:
            listing = listings.get((venue_code, symbol))
        except TypeError:  # unhashable input
            listing = None
        db_price = None if problem(price) else float(price) if sqlite else price
        db_size = None if problem(size) else float(size) if sqlite else size
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

    _lock_series({(listing.instrument_id, listing.venue_id) for _, _, listing in rows.values()})
    inserted, highest = _insert_trades([row for row, _, _ in rows.values()])

    grouped: dict[Listing, list[Tick]] = defaultdict(list)
    for key, (_, tick, listing) in rows.items():
        if inserted is None or key in inserted:
            grouped[listing].append(tick)
    series = []
    for listing, ticks in sorted(grouped.items()):
        ticks.sort(key=attrgetter("ts"))
        last_row_id = highest[(listing.venue_id, listing.instrument_id)]
        _update_candles(listing.instrument_id, listing.venue_id, listing.venue, ticks)
        _update_series(listing, ticks, last_row_id)
        series.append(NewTrades(listing.symbol, listing.venue, last_row_id, ticks))
    if publish and series:
        from marketdata.live import publish_after_commit

        publish_after_commit(series)
    return IngestResult(len(batch), sum(len(ticks) for ticks in grouped.values()), series)


# ---------------------------------------------------------------- candles


def _venue_filter(venue_ids: list[int] | None, params: list[Any]) -> str:
    if venue_ids is None:
        return ""
    params.extend(venue_ids)
    return f" AND venue_id IN ({', '.join(['%s'] * len(venue_ids))})"


def _stored_candles(instrument: int, resolution: str, venue_ids: list[int] | None, window: Window) -> list[Candle]:
    source = source_resolution(resolution)
    assert source is not None
    size = RESOLUTION_MS[resolution]
    table = _table(StoredCandle)
    quote = connection.ops.quote_name
    read = ", ".join(_amount_column(column) if column == "volume" else quote(column) for column in _CANDLE_READ)
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
    return rollup_candle_rows(rows, size, _venue_codes(None), _price_converter(), Decimal)


def _candles_from_trades(instrument: int, resolution: str, venue_ids: list[int] | None, window: Window) -> list[Candle]:
    size = RESOLUTION_MS[resolution]
    table = _table(Trade)
    # The last bucket is whole even where it reaches past the window's end.
    params: list[Any] = [instrument, window.start_ms, bucket_start(window.end_ms - 1, size) + size]
    venue_filter = _venue_filter(venue_ids, params)
    sql = (
        f"SELECT ts, price, {_amount_column('size')}, venue_id, trade_id FROM {table} "  # noqa: S608
        f"WHERE instrument_id = %s AND ts >= %s AND ts < %s{venue_filter}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return aggregate_trade_rows(rows, size, _venue_codes(None), _price_converter(), Decimal)


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
    venue_ids = None if venues is None else sorted(_venue_codes(venues))
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


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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

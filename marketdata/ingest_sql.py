"""Set-based SQL of ingestion: on PostgreSQL one statement for trades and
candles; on SQLite the candle upsert.

PostgreSQL: the batch (unique trade keys, validated by ``marketdata.ingest``)
is loaded with COPY into a session temporary table; one statement then
inserts the trades, skipping those already stored, and folds exactly the
inserted ones into the stored candles of every stored resolution (INSERT ...
ON CONFLICT DO UPDATE), all in the database:

- the new trades of each series are ranked once by the candle order
  ``(exchange timestamp, trade id)`` (``candles.trade_id_key``: ids of ASCII
  digits as numbers and before any other id, others as strings by code
  point), so a bucket's open and close are its lowest and highest ranks;
- high, low, volume (exact NUMERIC sums) and count are plain aggregates;
- a bucket already stored is merged: its open or close is replaced only by
  a trade earlier (later) in that order, high/low widen, volume and count
  add up. Out-of-order and repeated trades therefore give the same candles
  as one aggregation of all the trades.

SQLite: candles are built in Python (exact volumes are decimal text there,
which SQL cannot add) and written by one executemany upsert with the same
merge; conflicting volumes are added by ``lc_exact_add``, a function
registered on the connection.

Values travel only as COPY data or parameters; the SQL text holds
identifiers and the code's own resolutions. The caller holds the series'
locks (advisory locks on PostgreSQL, SQLite's single writer).
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

from django.db import connection

from marketdata.candles import EXACT
from marketdata.resolutions import RESOLUTION_MS, STORED_RESOLUTIONS

STAGING = "marketdata_trade_incoming"
TRADE_COLUMNS = ("venue_id", "instrument_id", "trade_id", "ts", "price", "size", "side")
_DIGITS = "^[0-9]+$"


def _order_key(ts: str, trade_id: str, sqlite: bool = False) -> str:
    """A row constructor ordering trades of one venue as
    ``(ts, trade_id_key(trade_id))`` does: digit ids first, by their value
    (length without leading zeros, then digits), then by the id's text;
    other ids by their text, compared by code point (COLLATE "C" on UTF-8,
    SQLite's BINARY)."""
    numeric = f"({trade_id} NOT GLOB '*[^0-9]*')" if sqlite else f"({trade_id} ~ '{_DIGITS}')"
    collate = "COLLATE BINARY" if sqlite else 'COLLATE "C"'
    return (
        f"({ts}, NOT {numeric}, CASE WHEN {numeric} THEN length(ltrim({trade_id}, '0')) ELSE 0 END, "
        f"(CASE WHEN {numeric} THEN ltrim({trade_id}, '0') ELSE '' END) {collate}, "
        f"{trade_id} {collate})"
    )


def _merge_set(sqlite: bool) -> str:
    """The SET of a candle upsert merging the new candle (EXCLUDED) into the
    stored one (``cur``): open or close replaced only by an earlier or later
    trade, high and low widened, volume and count added. On SQLite volumes
    are exact decimal text, added by ``lc_exact_add``."""
    quote = connection.ops.quote_name
    open_, close = quote("open"), quote("close")
    earlier = (
        f"{_order_key('EXCLUDED.open_ts', 'EXCLUDED.open_trade_id', sqlite)} < "
        f"{_order_key('cur.open_ts', 'cur.open_trade_id', sqlite)}"
    )
    later = (
        f"{_order_key('EXCLUDED.close_ts', 'EXCLUDED.close_trade_id', sqlite)} > "
        f"{_order_key('cur.close_ts', 'cur.close_trade_id', sqlite)}"
    )

    def pick(condition: str, column: str) -> str:
        return f"{column} = CASE WHEN {condition} THEN EXCLUDED.{column} ELSE cur.{column} END"

    greatest, least = ("max", "min") if sqlite else ("GREATEST", "LEAST")
    volume = "lc_exact_add(cur.volume, EXCLUDED.volume)" if sqlite else "cur.volume + EXCLUDED.volume"
    return (
        f"{pick(earlier, open_)}, {pick(earlier, 'open_ts')}, {pick(earlier, 'open_trade_id')}, "
        f"{pick(later, close)}, {pick(later, 'close_ts')}, {pick(later, 'close_trade_id')}, "
        f"high = {greatest}(cur.high, EXCLUDED.high), low = {least}(cur.low, EXCLUDED.low), "
        f"volume = {volume}, trades = cur.trades + EXCLUDED.trades"
    )


def _exact_add(a: Any, b: Any) -> str:
    with localcontext(EXACT):
        return format(Decimal(a) + Decimal(b), "f")


def upsert_candles_sqlite(cursor: Any, candle_table: str, columns: str, rows: list[list[Any]]) -> None:
    """SQLite: write candles of new trades (``columns``: the table's key and
    values, in ``rows``' order), merged into stored ones in one executemany."""
    cursor.connection.create_function("lc_exact_add", 2, _exact_add, deterministic=True)
    placeholders = ", ".join(["%s"] * len(rows[0]))
    cursor.executemany(
        f"INSERT INTO {candle_table} AS cur ({columns}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT (instrument_id, resolution, bucket, venue_id) DO UPDATE SET {_merge_set(True)}",
        rows,
    )


def _statement(trade_table: str, candle_table: str) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(TRADE_COLUMNS)
    resolutions = ", ".join(f"('{name}', {RESOLUTION_MS[name]}::bigint)" for name in STORED_RESOLUTIONS)
    rank_order = _order_key("ts", "trade_id")[1:-1]  # the same key as ORDER BY items
    open_, close = quote("open"), quote("close")

    # Identifiers and the code's own constants only: values go by COPY.
    return f"""
WITH ins AS (
    INSERT INTO {trade_table} ({columns}) SELECT {columns} FROM {STAGING}
    ON CONFLICT (venue_id, instrument_id, trade_id) DO NOTHING
    RETURNING id, venue_id, instrument_id, trade_id, ts, price, size
), ranked AS (
    SELECT venue_id, instrument_id, trade_id, ts, price, size,
           row_number() OVER (PARTITION BY venue_id, instrument_id ORDER BY {rank_order}) AS rk
    FROM ins
), buckets AS (
    SELECT r.venue_id, r.instrument_id, s.resolution, r.ts - r.ts %% s.ms AS bucket,
           max(r.price) AS high, min(r.price) AS low, sum(r.size) AS volume, count(*) AS trades,
           min(r.rk) AS first_rk, max(r.rk) AS last_rk
    FROM ranked r CROSS JOIN (VALUES {resolutions}) AS s (resolution, ms)
    GROUP BY r.venue_id, r.instrument_id, s.resolution, r.ts - r.ts %% s.ms
), candles AS (
    INSERT INTO {candle_table} AS cur (instrument_id, venue_id, resolution, bucket, {open_}, high, low, {close},
        volume, trades, open_ts, open_trade_id, close_ts, close_trade_id)
    SELECT b.instrument_id, b.venue_id, b.resolution, b.bucket, o.price, b.high, b.low, c.price,
           b.volume, b.trades, o.ts, o.trade_id, c.ts, c.trade_id
    FROM buckets b
    JOIN ranked o ON o.venue_id = b.venue_id AND o.instrument_id = b.instrument_id AND o.rk = b.first_rk
    JOIN ranked c ON c.venue_id = b.venue_id AND c.instrument_id = b.instrument_id AND c.rk = b.last_rk
    ON CONFLICT (instrument_id, resolution, bucket, venue_id) DO UPDATE SET {_merge_set(False)}
)
SELECT venue_id, instrument_id, max(id), NULL FROM ins GROUP BY venue_id, instrument_id
UNION ALL
SELECT i.venue_id, i.instrument_id, NULL, i.trade_id FROM {STAGING} i
WHERE (SELECT count(*) FROM ins) < %s AND NOT EXISTS (
    SELECT 1 FROM ins n
    WHERE n.venue_id = i.venue_id AND n.instrument_id = i.instrument_id AND n.trade_id = i.trade_id
)
"""  # noqa: S608


def insert_with_candles(
    cursor: Any, trade_table: str, candle_table: str, rows: list[tuple[Any, ...]]
) -> tuple[set[tuple[int, int, str]], dict[tuple[int, int], int]]:
    """Store ``rows`` (``TRADE_COLUMNS``, unique keys) and their candles.
    Returns the keys (venue, instrument, trade id) that were already stored,
    and the highest new Trade id per (venue, instrument)."""
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} (venue_id bigint NOT NULL, "
        "instrument_id bigint NOT NULL, trade_id varchar(64) NOT NULL, ts bigint NOT NULL, "
        "price numeric(38, 18) NOT NULL, size numeric(38, 18) NOT NULL, side varchar(4) NOT NULL) "
        "ON COMMIT DELETE ROWS"
    )
    # Emptied on commit; a batch of the same transaction (nested atomic
    # blocks) may have left rows.
    cursor.execute(f"TRUNCATE {STAGING}")
    with cursor.cursor.copy(f"COPY {STAGING} ({', '.join(TRADE_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    # The already stored trades are looked for only when some were (the
    # count is a one-time filter, evaluated before the anti-join).
    cursor.execute(_statement(trade_table, candle_table), [len(rows)])
    stored: set[tuple[int, int, str]] = set()
    highest: dict[tuple[int, int], int] = {}
    for venue, instrument, row_id, trade_id in cursor.fetchall():
        if trade_id is None:
            highest[(venue, instrument)] = row_id
        else:
            stored.add((venue, instrument, trade_id))
    return stored, highest

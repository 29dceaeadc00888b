"""How prices, amounts and candles are stored, per database: SQL column
reads and parameters, and the exact Decimals read back."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import connection

from marketdata.candles import Candle, trade_id_key


def table_name(model: Any) -> str:
    return str(connection.ops.quote_name(model._meta.db_table))


def to_decimal(value: Any) -> Decimal:
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


def price_converter() -> Callable[[Any], Decimal]:
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


def amount_column(column: str) -> str:
    """SQL reading an amount (size, volume) so that ``Decimal(value)`` is
    exact: SQLite renders a double as text with at most 15 significant digits
    (or as its shortest round-trip form), which is the decimal ingested."""
    if connection.vendor == "sqlite":
        return f"CAST({connection.ops.quote_name(column)} AS TEXT)"
    return connection.ops.quote_name(column)


# What a candle read returns (``candle_from_row`` unpacks it), and the row's
# columns: the key (instrument, venue, resolution) followed by those.
CANDLE_READ = (
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
CANDLE_COLUMNS = ("instrument_id", "venue_id", "resolution", *CANDLE_READ)


def candle_from_row(row: tuple[Any, ...], venue: str) -> Candle:
    bucket, open_, high, low, close, volume, trades, open_ts, open_id, close_ts, close_id = row
    return Candle(
        bucket,
        to_decimal(open_),
        to_decimal(high),
        to_decimal(low),
        to_decimal(close),
        to_decimal(volume),
        trades,
        (open_ts, venue, trade_id_key(open_id)),
        (close_ts, venue, trade_id_key(close_id)),
    )


def candle_params(candle: Candle, sqlite: bool) -> list[Any]:
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

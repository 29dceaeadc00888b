"""Readers of exchange trade files, yielding ``TradeInput`` one by one (plain
Python, no Django import).

Binance files as published on data.binance.vision, with or without a header
row, plain, ``.gz`` or ``.zip`` (every member, in name order):

- aggTrades: ``agg_id, price, qty, first_id, last_id, time, is_buyer_maker,
  is_best_match`` (futures files drop the last column and have a header);
- trades: ``id, price, qty, quote_qty, time, is_buyer_maker, is_best_match``.

An aggTrade (one taker order filled at one price) is stored as one trade with
its aggregate id: candle ``trades`` then count aggTrades, not the raw fills
Binance's klines count.

Spot files from 2025 on carry microsecond timestamps: values of 10^14 and
above are taken as microseconds and floored to milliseconds (ties in a
millisecond are ordered by trade id, which on Binance is time order).

JSON: an array (optionally gzipped) of ccxt trade dicts. Binance's raw
fields in ``info`` (exact decimal strings) are used when present; otherwise
ccxt's ``id, timestamp, price, amount, side``, floats read at their shortest
representation. Bare Binance aggTrade objects (``a, p, q, T, m``) work too.

``is_buyer_maker`` true means the taker sold: side ``sell``.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import zipfile
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from marketdata.trades import TradeInput

MICROSECONDS_FROM = 10**14

_ID = ("agg_trade_id", "agg_id", "aggtradeid", "a", "id", "trade_id")
_PRICE = ("price", "p")
_QTY = ("qty", "quantity", "q")
_TIME = ("transact_time", "time", "timestamp", "ts_ms", "t")
_MAKER = ("is_buyer_maker", "isbuyermaker", "m")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
# Binance's own JSON trade objects, by field name (id, time, price, qty,
# is_buyer_maker): an aggTrade, then a trade as /api/v3/trades returns it.
_BINANCE_JSON = (("a", "T", "p", "q", "m"), ("id", "time", "price", "qty", "isBuyerMaker"))


class TradeFileError(ValueError):
    pass


def read_trades(path: str | Path, *, venue: str, symbol: str) -> Iterator[TradeInput]:
    """Every trade of a Binance CSV (plain, .gz, .zip) or ccxt JSON file."""
    for where, stream in _text_streams(Path(path)):
        first = stream.readline()
        if first.lstrip().startswith("["):
            yield from _json_trades(first + stream.read(), where, venue, symbol)
        elif first.strip():
            yield from _csv_trades(itertools.chain([first], stream), where, venue, symbol)


def _text_streams(path: Path) -> Iterator[tuple[str, TextIO]]:
    name = path.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for member in sorted(archive.namelist()):
                if member.endswith("/"):
                    continue
                with archive.open(member) as raw:
                    yield f"{path}:{member}", io.TextIOWrapper(raw, encoding="utf-8", newline="")
    elif name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8", newline="") as text:
            yield str(path), text
    else:
        with path.open(encoding="utf-8", newline="") as text:
            yield str(path), text


def _decimal(value: Any, where: str) -> Decimal:
    try:
        if isinstance(value, float):
            return Decimal(repr(value))
        if isinstance(value, bool):
            raise InvalidOperation
        return Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise TradeFileError(f"{where}: not a decimal number: {str(value)[:40]!r}") from None


def _millis(value: Any, where: str) -> int:
    try:
        ts = int(value)
    except (TypeError, ValueError):
        raise TradeFileError(f"{where}: not an integer timestamp: {str(value)[:40]!r}") from None
    return ts // 1000 if ts >= MICROSECONDS_FROM else ts


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    flag = _BOOLEANS.get(str(value).strip().lower())
    if flag is None:
        raise TradeFileError(f"{where}: not a boolean: {str(value)[:40]!r}")
    return flag


def _columns(header: list[str]) -> tuple[int, int, int, int, int]:
    names = [name.strip().lower() for name in header]

    def find(candidates: tuple[str, ...]) -> int:
        for candidate in candidates:
            if candidate in names:
                return names.index(candidate)
        raise TradeFileError(f"no column named {' or '.join(candidates)} in header {header}")

    return find(_ID), find(_PRICE), find(_QTY), find(_TIME), find(_MAKER)


def _layout(row: list[str]) -> tuple[int, int, int, int, int]:
    """Columns (id, price, qty, time, is_buyer_maker) of a headerless file."""
    if len(row) == 8:
        return 0, 1, 2, 5, 6  # spot aggTrades
    if len(row) == 7:
        if row[5].strip().lower() in _BOOLEANS and row[6].strip().lower() in _BOOLEANS:
            return 0, 1, 2, 4, 5  # spot trades
        return 0, 1, 2, 5, 6  # futures aggTrades
    if len(row) == 6:
        return 0, 1, 2, 4, 5  # futures trades
    raise TradeFileError(f"unrecognised Binance CSV row of {len(row)} columns")


def _csv_trades(lines: Iterable[str], where: str, venue: str, symbol: str) -> Iterator[TradeInput]:
    reader = csv.reader(lines)
    layout: tuple[int, int, int, int, int] | None = None
    for number, row in enumerate(reader, start=1):
        if not row:
            continue
        if layout is None:
            if not row[0].strip().isdigit():
                layout = _columns(row)
                continue
            layout = _layout(row)
        id_col, price_col, qty_col, time_col, maker_col = layout
        at = f"{where}:{number}"
        try:
            yield TradeInput(
                venue,
                symbol,
                row[id_col].strip(),
                _millis(row[time_col], at),
                _decimal(row[price_col], at),
                _decimal(row[qty_col], at),
                "sell" if _flag(row[maker_col], at) else "buy",
            )
        except IndexError:
            raise TradeFileError(f"{at}: expected {max(layout) + 1} columns, got {len(row)}") from None


def _json_trades(text: str, where: str, venue: str, symbol: str) -> Iterator[TradeInput]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TradeFileError(f"{where}: invalid JSON: {exc}") from None
    if not isinstance(items, list):
        raise TradeFileError(f"{where}: expected a JSON array of trades")
    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise TradeFileError(f"{at}: expected an object")
        raw = item.get("info")
        info: dict[str, Any] = raw if isinstance(raw, dict) else item
        try:
            names = next((names for names in _BINANCE_JSON if info.keys() >= set(names)), None)
            if names is not None:
                trade_id, time, price, qty, maker = (info[name] for name in names)
                yield TradeInput(
                    venue,
                    symbol,
                    str(trade_id),
                    _millis(time, at),
                    _decimal(price, at),
                    _decimal(qty, at),
                    "sell" if _flag(maker, at) else "buy",
                )
            else:
                yield TradeInput(
                    venue,
                    symbol,
                    str(item["id"]),
                    _millis(item["timestamp"], at),
                    _decimal(item["price"], at),
                    _decimal(item["amount"], at),
                    str(item.get("side") or ""),
                )
        except KeyError as exc:
            raise TradeFileError(f"{at}: missing field {exc}") from None

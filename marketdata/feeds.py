"""Trades in from outside: live exchange feeds (ccxt) and replays of files.

Both hand batches of ``TradeInput`` to ``services.ingest_trades``, which
stores them once each and publishes the new ones to live charts after
commit; a feed that reconnects and sees trades again stores nothing twice.

- ``ExchangeFeed`` follows one exchange through ccxt: its WebSocket trade
  stream (``ccxt.pro`` ``watch_trades``) when the exchange has one, else
  polling ``fetch_trades`` with ``since``. ccxt's unified trade dicts are
  mapped to ``TradeInput`` by ``trade_from_ccxt``; the exchange's raw
  decimal strings are used when ccxt keeps them in ``info``.
- ``replay`` plays trades of a file back as if live: their timestamps are
  moved so that the first trade happens now, their pace kept (or sped up),
  and their ids made unique per run, so a demo can replay one file forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from marketdata.trades import TradeInput

log = logging.getLogger(__name__)

FEEDS_EXTRA = "requirements-feeds.txt"


class FeedsExtraMissing(ImportError):
    """A live exchange feed was asked for without the optional ccxt extra."""


def ccxt_pro() -> Any:
    """The ``ccxt.pro`` module, which live exchange feeds need."""
    try:
        # Imported here: ccxt is an optional extra (FEEDS_EXTRA), installed
        # only where live exchange feeds run.
        import ccxt.pro  # noqa: PLC0415
    except ImportError:
        raise FeedsExtraMissing(
            f"live exchange feeds need ccxt, an optional extra: .venv/bin/pip install -r {FEEDS_EXTRA}"
        ) from None
    return ccxt.pro


Ingest = Callable[[list[TradeInput]], Awaitable[int]]


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))  # shortest representation: what the exchange sent
    return Decimal(str(value))


def trade_from_ccxt(trade: dict[str, Any], *, venue: str, symbol: str) -> TradeInput:
    """A ccxt unified trade dict as a TradeInput of ``symbol`` (BASE-QUOTE)."""
    info = trade.get("info") or {}
    price = info.get("p") if isinstance(info, dict) and isinstance(info.get("p"), str) else trade["price"]
    size = info.get("q") if isinstance(info, dict) and isinstance(info.get("q"), str) else trade["amount"]
    side = trade.get("side")
    if side not in ("buy", "sell"):
        raise ValueError(f"trade {trade.get('id')!r} has no taker side")
    if trade.get("id") is None or trade.get("timestamp") is None:
        raise ValueError("a ccxt trade needs an id and a timestamp")
    return TradeInput(venue, symbol, str(trade["id"]), int(trade["timestamp"]), _decimal(price), _decimal(size), side)


def unified_symbol(symbol: str) -> str:
    """``BTC-USD`` -> ccxt's ``BTC/USD``."""
    base, _, quote = symbol.partition("-")
    return f"{base}/{quote}"


@dataclass
class FeedStats:
    batches: int = 0
    received: int = 0
    inserted: int = 0
    errors: int = 0


class ExchangeFeed:
    """Follow the trades of some symbols on one exchange.

    ``exchange`` is a ccxt (or ccxt.pro) exchange object; tests pass an
    object with the same methods serving recorded trades."""

    def __init__(
        self,
        exchange: Any,
        *,
        venue: str,
        symbols: Iterable[str],
        ingest: Ingest,
        poll_seconds: float = 1.0,
        max_errors_in_a_row: int = 20,
    ) -> None:
        self.exchange = exchange
        self.venue = venue
        self.symbols = list(symbols)
        self.ingest = ingest
        self.poll_seconds = poll_seconds
        self.max_errors_in_a_row = max_errors_in_a_row
        self.stats = FeedStats()
        self._since: dict[str, int | None] = dict.fromkeys(self.symbols)

    def _streams(self) -> bool:
        has = getattr(self.exchange, "has", {}) or {}
        return bool(has.get("watchTrades")) and hasattr(self.exchange, "watch_trades")

    async def _next_batch(self, symbol: str) -> list[dict[str, Any]]:
        if self._streams():
            return list(await self.exchange.watch_trades(unified_symbol(symbol)))
        trades = list(await self.exchange.fetch_trades(unified_symbol(symbol), since=self._since[symbol]))
        if trades:
            self._since[symbol] = max(int(t["timestamp"]) for t in trades)
        else:
            await asyncio.sleep(self.poll_seconds)
        return trades

    async def follow(self, symbol: str, *, stop: asyncio.Event | None = None) -> None:
        errors_in_a_row = 0
        while stop is None or not stop.is_set():
            try:
                raw = await self._next_batch(symbol)
            except StopAsyncIteration:
                return  # a recorded session ended
            except Exception as exc:
                errors_in_a_row += 1
                self.stats.errors += 1
                if errors_in_a_row >= self.max_errors_in_a_row:
                    raise
                delay = min(30.0, 0.5 * 2**errors_in_a_row)
                log.warning("%s %s: %s; retrying in %.1fs", self.venue, symbol, exc, delay)
                await asyncio.sleep(delay)
                continue
            errors_in_a_row = 0
            batch = [trade_from_ccxt(t, venue=self.venue, symbol=symbol) for t in raw]
            if not batch:
                continue
            inserted = await self.ingest(batch)
            self.stats.batches += 1
            self.stats.received += len(batch)
            self.stats.inserted += inserted

    async def run(self, *, stop: asyncio.Event | None = None) -> FeedStats:
        try:
            await asyncio.gather(*(self.follow(symbol, stop=stop) for symbol in self.symbols))
        finally:
            close = getattr(self.exchange, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
        return self.stats


def replay(
    trades: Iterable[TradeInput],
    *,
    speed: float = 1.0,
    run_id: str,
    start_ms: int | None = None,
    batch_ms: int = 100,
) -> Iterator[tuple[float, list[TradeInput]]]:
    """``(seconds from the start, batch)`` pairs: the trades moved in time so
    that the first one happens at ``start_ms`` (default now), ``speed`` times
    faster than recorded, in batches of ``batch_ms`` of replayed time. Trade
    ids become ``<run_id>-<id>``, so every run stores new trades."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    origin: int | None = None
    start = int(time.time() * 1000) if start_ms is None else start_ms
    batch: list[TradeInput] = []
    batch_due = 0.0
    for trade in trades:
        if origin is None:
            origin = trade.ts
        offset = (trade.ts - origin) / speed
        due = offset / 1000.0
        moved = trade._replace(ts=start + int(offset), trade_id=f"{run_id}-{trade.trade_id}"[:64])
        if batch and due - batch_due >= batch_ms / 1000.0:
            yield batch_due, batch
            batch = []
        if not batch:
            batch_due = due
        batch.append(moved)
    if batch:
        yield batch_due, batch


def replay_forever(
    read: Callable[[], Iterable[TradeInput]],
    ingest: Callable[[list[TradeInput]], int],
    *,
    speed: float,
    loops: int | None = None,
    stop: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Replay ``read()`` ``loops`` times (None: until ``stop`` is set), each
    run right after the previous one; returns the trades stored."""
    stored = 0
    run = 0
    while loops is None or run < loops:
        run += 1
        run_id = f"r{int(time.time() * 1000):x}"
        began = time.monotonic()
        for due, batch in replay(read(), speed=speed, run_id=run_id):
            if stop is not None and stop.is_set():
                return stored
            wait = due - (time.monotonic() - began)
            if wait > 0:
                sleep(wait)
            stored += ingest(batch)
    return stored

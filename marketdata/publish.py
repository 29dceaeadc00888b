"""Publishing stored trades to live charts.

Ingestion announces the trades it stored, after commit, on the channel-layer
group ``market-ticks.<SYMBOL>`` (Redis on the scaled stack, so a feed in one
process reaches subscribers in all of them); ``marketdata.live`` receives
them. One-way: ingestion imports this module, the live hub imports it for
the group and message names, and this module imports neither.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from marketdata.trades import NewTrades
from realtime.layers import NoLocalReceivers

log = logging.getLogger(__name__)

TICKS_MESSAGE = "market.ticks"
MAX_TICKS_PER_MESSAGE = 5_000


def tick_group(symbol: str) -> str:
    return "market-ticks." + symbol


def publish_after_commit(batches: Iterable[NewTrades]) -> None:
    """Call inside the ingesting transaction: the trades are announced only
    if it commits."""
    batches = [b for b in batches if b.ticks]
    if batches:
        transaction.on_commit(lambda: publish(batches))


def _messages(symbol: str, batches: list[NewTrades]) -> Iterator[dict[str, Any]]:
    """The batches of one ingestion in as few messages as fit
    ``MAX_TICKS_PER_MESSAGE`` trades (so a chart moves once for them).
    Every part of a split batch carries the batch's watermark; only its last
    part marks it as counted."""
    series: list[list[Any]] = []
    size = 0
    for batch in batches:
        rows = [[t.ts, str(t.price), str(t.size), t.trade_id] for t in batch.ticks]
        start = 0
        while start < len(rows):
            room = MAX_TICKS_PER_MESSAGE - size
            part = rows[start : start + room]
            start += len(part)
            series.append([batch.venue, batch.watermark, part, start >= len(rows)])
            size += len(part)
            if size >= MAX_TICKS_PER_MESSAGE:
                yield {"type": TICKS_MESSAGE, "symbol": symbol, "series": series}
                series, size = [], 0
    if series:
        yield {"type": TICKS_MESSAGE, "symbol": symbol, "series": series}


async def _send_all(by_symbol: dict[str, list[NewTrades]]) -> None:
    layer = get_channel_layer()
    assert layer is not None
    for symbol, batches in by_symbol.items():
        try:
            for message in _messages(symbol, batches):
                await layer.group_send(tick_group(symbol), message)
        except NoLocalReceivers:
            return  # embedded stack, outside the server process: no live subscriber here
        except Exception:
            log.exception("live trades of %s not published", symbol)


def publish(batches: list[NewTrades]) -> None:
    """Best effort: the stored trades are the truth; a lost message only
    delays a chart until its next bucket. Every symbol in one pass through
    the event loop (one ``async_to_sync`` per ingestion, not per symbol)."""
    by_symbol: dict[str, list[NewTrades]] = {}
    for batch in batches:
        by_symbol.setdefault(batch.symbol, []).append(batch)
    if get_channel_layer() is None:
        return
    try:
        async_to_sync(_send_all)(by_symbol)
    except Exception:
        log.exception("live trades of %s not published", ", ".join(by_symbol))

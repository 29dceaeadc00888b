"""A trade as producers hand it in, and the trades one ingestion stored
(plain Python, no Django import)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from marketdata.candles import Tick


class TradeInput(NamedTuple):
    venue: str  # venue code, e.g. binance
    symbol: str  # BASE-QUOTE, or the venue's native symbol (a VenueSymbol)
    trade_id: str  # the exchange's id, unique per venue and instrument
    ts: int  # exchange timestamp, epoch milliseconds
    price: Decimal
    size: Decimal  # base quantity
    side: str  # taker side: buy | sell


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

"""A trade as producers hand it in (plain Python, no Django import)."""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple


class TradeInput(NamedTuple):
    venue: str  # venue code, e.g. binance
    symbol: str  # BASE-QUOTE, or the venue's native symbol (a VenueSymbol)
    trade_id: str  # the exchange's id, unique per venue and instrument
    ts: int  # exchange timestamp, epoch milliseconds
    price: Decimal
    size: Decimal  # base quantity
    side: str  # taker side: buy | sell

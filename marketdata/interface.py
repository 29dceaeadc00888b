"""What the other apps may use of market data (import-linter enforces it):
listings and trade ingestion, candles and their resolutions, the request window field, and the
instrument and venue models the chat vocabulary reads."""

from __future__ import annotations

from marketdata.errors import MarketDataError
from marketdata.listings import ensure_listing
from marketdata.models import Instrument, Venue
from marketdata.payloads import WindowField
from marketdata.resolutions import RESOLUTIONS
from marketdata.services import ingest_trades, load_candles
from marketdata.trades import TradeInput

__all__ = [
    "RESOLUTIONS",
    "Instrument",
    "MarketDataError",
    "TradeInput",
    "Venue",
    "WindowField",
    "ensure_listing",
    "ingest_trades",
    "load_candles",
]

"""Market data services: trades in (idempotent, exact roll-ups), candles out.

The operations other code calls, gathered in one place; each lives in the
module named beside it:

- ``ingest``: ``ingest_trades`` stores a batch once and updates the stored
  candles with exactly the new trades, in one transaction;
- ``listings``: ``ensure_listing``, ``instrument_id``;
- ``reads``: ``load_candles``, ``aggregate_candles``, ``fetch_candles``,
  ``forming_candle``, and the snapshots a live chart starts from
  (``live_seed``, ``live_history``);
- ``errors`` and ``windows``: what they refuse.
"""

from __future__ import annotations

from marketdata.errors import InvalidTrades, MarketDataError, UnknownSymbol, UnknownVenue
from marketdata.ingest import IngestResult, ingest_trades
from marketdata.listings import configured_precision, ensure_listing, instrument_id
from marketdata.reads import (
    CandleSeries,
    aggregate_candles,
    fetch_candles,
    forming_candle,
    live_history,
    live_seed,
    load_candles,
)
from marketdata.trades import NewTrades, TradeInput
from marketdata.windows import TooManyCandles, WindowError

__all__ = [
    "CandleSeries",
    "IngestResult",
    "InvalidTrades",
    "MarketDataError",
    "NewTrades",
    "TooManyCandles",
    "TradeInput",
    "UnknownSymbol",
    "UnknownVenue",
    "WindowError",
    "aggregate_candles",
    "configured_precision",
    "ensure_listing",
    "fetch_candles",
    "forming_candle",
    "ingest_trades",
    "instrument_id",
    "live_history",
    "live_seed",
    "load_candles",
]

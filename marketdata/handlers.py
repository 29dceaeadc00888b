"""Market data events (section "Market Data" of the event reference):
``request_market_data`` -> ``market_data_response``, and the
``market:<SYMBOL>:<resolution>`` room namespace, open to any authenticated
user, without presence events."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from marketdata import live, services
from marketdata.payloads import (
    ChartInitialPayload,
    ChartLiveUpdatePayload,
    MarketDataErrorPayload,
    MarketDataRequest,
    MarketDataResponse,
)
from marketdata.precision import price_precision
from marketdata.resolutions import RESOLUTIONS
from marketdata.symbols import SYMBOL_RE
from marketdata.windows import MAX_CANDLES
from realtime.context import RequestContext
from realtime.errors import NotFound, ProtocolError, ValidationFailed
from realtime.registry import registry
from realtime.rooms import Namespace, register_namespace

CATEGORY = "Market data"


class CandleLimitExceeded(ProtocolError):
    """Sent as market_data_error (not validation_error): the request is well
    formed, the answer would be too large."""

    code = "VALIDATION_FAILED"


registry.outbound(
    "market_data_response",
    MarketDataResponse,
    category=CATEGORY,
    summary="Candles of a symbol at a resolution over a window.",
)
registry.outbound(
    "market_data_error",
    MarketDataErrorPayload,
    category=CATEGORY,
    summary="A market data request failed: unknown symbol or venue (NOT_FOUND), too many candles, or INTERNAL.",
)


# --- events -------------------------------------------------------------------------


def _fetch(data: dict[str, Any]) -> dict[str, Any]:
    series = services.fetch_candles(
        data["symbol"], data["resolution"], venues=data.get("venues"), window=data.get("window")
    )
    candles = [candle.to_wire() for candle in series.candles]
    return {
        "symbol": series.symbol,
        "resolution": series.resolution,
        "pricePrecision": price_precision(candles, services.configured_precision(series.symbol)),
        "candles": candles,
    }


@registry.on(
    "request_market_data",
    MarketDataRequest,
    summary=f"Candles of a symbol (all venues merged, or some), at most {MAX_CANDLES} per request.",
    replies=("market_data_response",),
    error_event="market_data_error",
    category=CATEGORY,
)
async def request_market_data(ctx: RequestContext, data: dict[str, Any]) -> None:
    try:
        # A worker thread of its own rather than the process's one ORM
        # thread: a query of thousands of candles must not hold up the
        # database calls of every other socket.
        response = await database_sync_to_async(_fetch, thread_sensitive=False)(data)
    except services.UnknownSymbol as exc:
        raise NotFound(str(exc)) from None
    except services.UnknownVenue as exc:
        raise NotFound(str(exc)) from None
    except services.WindowError as exc:
        raise ValidationFailed(str(exc), exc.errors) from None
    except services.TooManyCandles as exc:
        raise CandleLimitExceeded(str(exc), maxCandles=exc.max_candles) from None
    await ctx.send("market_data_response", response)


# --- rooms ----------------------------------------------------------------------------


async def _authorize_market_room(ctx: RequestContext, rest: str) -> None:
    symbol, _, resolution = rest.rpartition(":")
    if not SYMBOL_RE.match(symbol):
        raise ValidationFailed("bad market room", {"room": ["Expected market:<BASE-QUOTE>:<resolution>."]})
    if resolution not in RESOLUTIONS:
        raise ValidationFailed("bad resolution", {"room": [f"Resolution must be one of {' '.join(RESOLUTIONS)}."]})
    try:
        await database_sync_to_async(services.instrument_id)(symbol)
    except services.UnknownSymbol as exc:
        raise NotFound(str(exc), room=f"market:{rest}") from None


async def _join_market_room(ctx: RequestContext, rest: str) -> None:
    symbol, _, resolution = rest.rpartition(":")
    await live.hub.join(ctx.connection, ctx.request_id, f"market:{rest}", symbol, resolution)


registry.outbound(
    "market_chart_initial_data",
    ChartInitialPayload,
    category=CATEGORY,
    summary="Sent on joining market:<SYMBOL>:<resolution>: recent candles, then live updates follow without gap.",
)
registry.outbound(
    "market_chart_live_update",
    ChartLiveUpdatePayload,
    category=CATEGORY,
    pushed=True,
    summary=(
        f"The forming candle of a market room, at most {live.FLUSHES_PER_SECOND} flushes a second; a flush also "
        "carries the final state of every bucket closed since the previous one. Timestamps never go back."
    ),
)


register_namespace(
    Namespace(
        "market",
        _authorize_market_room,
        presence_events=False,
        description="Live chart of a symbol at a resolution; open to any authenticated user.",
        on_join=_join_market_room,
        history=False,
    )
)

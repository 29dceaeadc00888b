"""request_market_data over a real WebSocket: candles, venues, windows and
every error path."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from marketdata import services
from marketdata.demo import FIXTURE_NAME, fixture_dir
from marketdata.importers import read_trades
from marketdata.trades import TradeInput
from realtime.protocol import now_ms
from tests.wsclient import connected, unique

pytestmark = pytest.mark.django_db(transaction=True)

KLINES = fixture_dir() / "XRPETH-binance-klines-1m-2019-10-11_13.json"
FIRST_MINUTE = 1_570_752_000_000


@database_sync_to_async
def import_fixture() -> None:
    services.ensure_listing("binance", "XRP-ETH", native="XRPETH")
    services.ingest_trades(list(read_trades(fixture_dir() / FIXTURE_NAME, venue="binance", symbol="XRP-ETH")))


@database_sync_to_async
def ingest(*trades: TradeInput) -> None:
    for trade in trades:
        services.ensure_listing(trade.venue, trade.symbol)
    services.ingest_trades(list(trades))


async def test_market_data_response_carries_binance_equal_candles_as_json_numbers(live_server_url):
    await import_fixture()
    client = await connected(live_server_url, unique("trader"))
    frame = await client.request(
        "request_market_data",
        {"symbol": "XRP-ETH", "resolution": "1m", "window": {"from": FIRST_MINUTE, "to": FIRST_MINUTE + 86_400_000}},
        id="m1",
    )
    assert frame["event"] == "market_data_response" and frame["id"] == "m1"
    data = frame["data"]
    assert (data["symbol"], data["resolution"], set(data)) == (
        "XRP-ETH",
        "1m",
        {"symbol", "resolution", "pricePrecision", "candles"},
    )
    # XRP-ETH trades around 0.0003 ETH: enough decimals for every price sent
    # (a chart at 2 decimals would show 0.00).
    precision = data["pricePrecision"]
    assert precision >= 6
    for candle in data["candles"]:
        for key in ("open", "high", "low", "close"):
            assert round(candle[key], precision) == candle[key]
    klines = {row[0]: row[1:] for row in json.loads(KLINES.read_text()) if row[5] > 0}
    candles = data["candles"]
    assert len(candles) == len([t for t in klines if t < FIRST_MINUTE + 86_400_000])
    for candle in candles:
        assert set(candle) == {"timestamp", "open", "high", "low", "close", "volume", "trades"}
        assert all(isinstance(candle[key], float) for key in ("open", "high", "low", "close", "volume"))
        assert [candle["open"], candle["high"], candle["low"], candle["close"], candle["volume"]] == klines[
            candle["timestamp"]
        ]
        assert isinstance(candle["trades"], int) and candle["trades"] > 0
    assert [c["timestamp"] for c in candles] == sorted(c["timestamp"] for c in candles)
    await client.close()


async def test_sub_second_candles_and_a_venue_filter_over_the_socket(live_server_url):
    now = now_ms()
    at = now - now % 1000 - 5_000
    await ingest(
        TradeInput("binance", "SOL-USD", "1", at + 10, Decimal("150.10"), Decimal("2"), "buy"),
        TradeInput("coinbase", "SOL-USD", "1", at + 20, Decimal("150.20"), Decimal("3"), "sell"),
        TradeInput("binance", "SOL-USD", "2", at + 130, Decimal("150.30"), Decimal("1"), "buy"),
    )
    client = await connected(live_server_url, unique("scalper"))
    merged = await client.request("request_market_data", {"symbol": "SOL-USD", "resolution": "100ms", "window": "1m"})
    assert merged["data"]["candles"] == [
        {"timestamp": at, "open": 150.1, "high": 150.2, "low": 150.1, "close": 150.2, "volume": 5.0, "trades": 2},
        {"timestamp": at + 100, "open": 150.3, "high": 150.3, "low": 150.3, "close": 150.3, "volume": 1.0, "trades": 1},
    ]
    coinbase = await client.request(
        "request_market_data", {"symbol": "SOL-USD", "resolution": "1m", "venues": ["coinbase"], "window": "5m"}
    )
    assert [(c["open"], c["volume"], c["trades"]) for c in coinbase["data"]["candles"]] == [(150.2, 3.0, 1)]
    await client.close()


async def test_unknown_symbol_and_venue_get_market_data_error_not_found(live_server_url):
    await ingest(TradeInput("binance", "BTC-USD", "1", 1_700_000_000_000, Decimal(1), Decimal(1), "buy"))
    client = await connected(live_server_url, unique("lost"))
    frame = await client.request("request_market_data", {"symbol": "NOPE-USD", "resolution": "1m"}, id="q")
    assert frame["event"] == "market_data_error" and frame["id"] == "q"
    assert frame["data"]["code"] == "NOT_FOUND" and "NOPE-USD" in frame["data"]["message"]
    frame = await client.request(
        "request_market_data", {"symbol": "BTC-USD", "resolution": "1m", "venues": ["atlantis"]}
    )
    assert (frame["event"], frame["data"]["code"]) == ("market_data_error", "NOT_FOUND")
    assert "atlantis" in frame["data"]["message"]
    await client.close()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"symbol": "BTC-USD", "resolution": "2m"}, "resolution"),
        ({"symbol": "BTC-USD", "resolution": "1m", "window": "forever"}, "window"),
        ({"symbol": "BTC-USD", "resolution": "1m", "window": {"from": 5, "to": 1}}, "window"),
        ({"symbol": "BTC-USD", "resolution": "1m", "window": {"from": 5}}, "window"),
        ({"symbol": "btc/usd", "resolution": "1m"}, "symbol"),
        ({"symbol": "BTC-USD", "resolution": "1m", "venues": []}, "venues"),
        ({"symbol": "BTC-USD", "resolution": "1m", "limit": 5}, "limit"),
        ({"resolution": "1m"}, "symbol"),
    ],
)
async def test_bad_resolution_window_or_fields_get_validation_error(live_server_url, payload, field):
    client = await connected(live_server_url, unique("sloppy"))
    frame = await client.request("request_market_data", payload, id="v")
    assert frame["event"] == "validation_error" and frame["id"] == "v"
    assert frame["data"]["code"] == "VALIDATION_FAILED" and frame["data"]["event"] == "request_market_data"
    assert field in frame["data"]["errors"], frame["data"]
    await client.close()


async def test_too_many_candles_get_market_data_error_saying_how_to_narrow(live_server_url):
    await ingest(TradeInput("binance", "BTC-USD", "1", 1_700_000_000_000, Decimal(1), Decimal(1), "buy"))
    client = await connected(live_server_url, unique("greedy"))
    frame = await client.request("request_market_data", {"symbol": "BTC-USD", "resolution": "100ms", "window": "24h"})
    assert frame["event"] == "market_data_error"
    data = frame["data"]
    assert data["code"] == "VALIDATION_FAILED" and data["maxCandles"] == 10_000
    assert "16m40s at 100ms" in data["message"] and "15s or coarser" in data["message"]
    ok = await client.request("request_market_data", {"symbol": "BTC-USD", "resolution": "100ms", "window": "15m"})
    assert ok["event"] == "market_data_response"
    await client.close()


async def test_the_asyncapi_document_lists_the_market_data_events(live_server_url):
    from realtime.asyncapi import build_document

    messages = build_document()["channels"]["ws"]["messages"]
    request = messages["request_market_data"]["payload"]["properties"]["data"]
    assert set(request["properties"]) == {"symbol", "resolution", "venues", "window"}
    assert request["required"] == ["symbol", "resolution"]
    response = messages["market_data_response"]["payload"]["properties"]["data"]
    assert set(response["properties"]["candles"]["items"]["properties"]) == {
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "trades",
    }
    assert messages["request_market_data"]["x-ledgercore"]["errorEvent"] == "market_data_error"

"""GET /api/market/candles: the HTTP twin of request_market_data."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from marketdata import services
from marketdata.trades import TradeInput
from marketdata.windows import MAX_CANDLES
from tests.wsclient import dev_token

pytestmark = pytest.mark.django_db

T = 1_700_000_040_000  # a minute boundary


def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {dev_token(user.username)}")
    return client


def _seed() -> None:
    for venue in ("binance", "kraken"):
        services.ensure_listing(venue, "BTC-USD")
    services.ingest_trades(
        [
            TradeInput("binance", "BTC-USD", "1", T + 10, Decimal("100"), Decimal("1"), "buy"),
            TradeInput("kraken", "BTC-USD", "1", T + 20, Decimal("300"), Decimal("3"), "sell"),
            TradeInput("binance", "BTC-USD", "2", T + 60_010, Decimal("110"), Decimal("2"), "buy"),
        ]
    )


def test_candles_over_a_window_equal_the_read_service(alice):
    _seed()
    response = _client(alice).get(
        "/api/market/candles", {"symbol": "BTC-USD", "resolution": "1m", "from": T, "to": T + 120_000}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["symbol"] == "BTC-USD" and body["resolution"] == "1m"
    expected = services.fetch_candles("BTC-USD", "1m", window={"from": T, "to": T + 120_000})
    assert body["candles"] == [candle.to_wire() for candle in expected.candles]
    assert [(c["timestamp"], c["open"], c["close"], c["trades"]) for c in body["candles"]] == [
        (T, 100.0, 300.0, 2),
        (T + 60_000, 110.0, 110.0, 1),
    ]


def test_the_venues_filter(alice):
    _seed()
    response = _client(alice).get(
        "/api/market/candles",
        {"symbol": "BTC-USD", "resolution": "1m", "from": T, "to": T + 60_000, "venues": "kraken"},
    )
    assert response.status_code == 200
    assert [(c["open"], c["volume"]) for c in response.json()["candles"]] == [(300.0, 3.0)]


def test_refusals_carry_codes(alice):
    _seed()
    client = _client(alice)
    get = lambda **params: client.get("/api/market/candles", params)  # noqa: E731
    bad = get(symbol="BTC-USD", resolution="7m")
    assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_FAILED" and "resolution" in bad.json()["errors"]
    half = get(symbol="BTC-USD", resolution="1m", **{"from": T})
    assert half.status_code == 400 and "window" in half.json()["errors"]
    backwards = get(symbol="BTC-USD", resolution="1m", **{"from": T, "to": T})
    assert backwards.status_code == 400
    unknown = get(symbol="DOGE-USD", resolution="1m")
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"
    venue = get(symbol="BTC-USD", resolution="1m", venues="nowhere")
    assert venue.status_code == 404
    too_many = get(symbol="BTC-USD", resolution="1s", **{"from": T, "to": T + (MAX_CANDLES + 1) * 1000})
    assert too_many.status_code == 400 and too_many.json()["maxCandles"] == MAX_CANDLES


def test_anonymous_is_refused():
    response = APIClient().get("/api/market/candles", {"symbol": "BTC-USD", "resolution": "1m"})
    assert response.status_code in (401, 403)

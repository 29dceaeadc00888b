"""Market data in the query engine's catalog: public ``trades`` and
``candles`` tables, read through the same compiler and executor as any
user SQL."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from accounts import services as accounts
from marketdata import services
from marketdata.trades import TradeInput
from queryengine import services as queries

pytestmark = pytest.mark.django_db(transaction=True)


def rows_of(sql: str, params: object = None) -> list[list[object]]:
    user = accounts.get_or_create_user("quant-" + uuid.uuid4().hex[:8])
    assert user.default_application_id is not None
    rows: list[list[object]] = []
    queries.run_query(
        user_pk=user.pk,
        application_id=user.default_application_id,
        sql=sql,
        params=params,
        on_chunk=lambda chunk, schema: rows.extend(chunk),
    )
    return rows


def test_trades_and_candles_are_queryable_by_symbol_and_venue():
    symbol = "Q" + uuid.uuid4().hex[:6].upper() + "-USD"
    for venue in ("venue-a", "venue-b"):
        services.ensure_listing(venue, symbol)
    base = 1_700_000_000_000
    services.ingest_trades(
        [
            TradeInput("venue-a", symbol, "1", base, Decimal("10.5"), Decimal("2"), "buy"),
            TradeInput("venue-a", symbol, "2", base + 1500, Decimal("11"), Decimal("1"), "sell"),
            TradeInput("venue-b", symbol, "1", base + 10, Decimal("10"), Decimal("4"), "buy"),
        ],
        publish=False,
    )
    trades = rows_of(
        "SELECT venue, count(*), sum(size), max(price) FROM trades WHERE symbol = ? GROUP BY venue ORDER BY venue",
        [symbol],
    )
    assert [[v, n, float(s), float(p)] for v, n, s, p in trades] == [
        ["venue-a", 2, 3.0, 11.0],
        ["venue-b", 1, 4.0, 10.0],
    ]
    candles = rows_of(
        "SELECT venue, ts, open, close, volume, trades FROM candles "
        "WHERE symbol = :s AND resolution = '1s' ORDER BY venue, ts",
        {"s": symbol},
    )
    assert [[v, ts, float(o), float(c), float(vol), n] for v, ts, o, c, vol, n in candles] == [
        ["venue-a", base, 10.5, 10.5, 2.0, 1],
        ["venue-a", base + 1000, 11.0, 11.0, 1.0, 1],
        ["venue-b", base, 10.0, 10.0, 4.0, 1],
    ]


def test_count_star_and_now_work_on_every_stack():
    """A count that reads no column of a joined table, and now(), pass the
    SQLite authorizer as they pass PostgreSQL's grants."""
    symbol = "C" + uuid.uuid4().hex[:6].upper() + "-USD"
    services.ensure_listing("venue-a", symbol)
    services.ingest_trades([TradeInput("venue-a", symbol, "1", 1_700_000_000_000, Decimal(1), Decimal(1), "buy")])
    assert rows_of("SELECT count(*) FROM trades WHERE symbol = ?", [symbol]) == [[1]]
    assert float(rows_of("SELECT sum(size) FROM trades WHERE symbol = ?", [symbol])[0][0]) == 1.0
    assert rows_of("SELECT count(*) FROM trades WHERE symbol = ? AND now() IS NOT NULL", [symbol]) == [[1]]

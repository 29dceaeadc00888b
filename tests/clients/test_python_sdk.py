"""The Python SDK (clients/python, ledgercore_client) against a real server process."""

from __future__ import annotations

import asyncio

import pytest
from ledgercore_client import (
    AsyncClient,
    Client,
    ConnectionLost,
    LedgerCoreError,
    NotFound,
    Unauthorized,
    ValidationFailed,
)

from tests.clients.conftest import QUERY_PRICE, broadcast

ROOM = "application:app_demo"


async def test_connects_pings_and_gets_its_balance(server, token):
    async with AsyncClient(server.http, token) as client:
        assert client.user_id == "demo_user"
        assert client.application_id == "app_demo"
        assert await client.ping() > 0
        balance = await client.get_balance()
        assert balance["applicationId"] == "app_demo"
        assert balance["newBalance"] >= 0
        # The personal room's position came with `connected`.
        assert "user:demo_user" in client.positions


async def test_candles_of_the_demo_market(server, token):
    async with AsyncClient(server.url, token) as client:
        answer = await client.candles("BTC-USD", "1h", window="24h")
    assert answer["symbol"] == "BTC-USD" and answer["resolution"] == "1h"
    assert answer["candles"], answer
    times = [candle["timestamp"] for candle in answer["candles"]]
    assert times == sorted(times)
    assert all(float(c["low"]) <= float(c["close"]) <= float(c["high"]) for c in answer["candles"])


async def test_query_rows_stream_as_dicts_and_the_query_events_come_in_order(server, token):
    sql = (
        "SELECT symbol, count(*) AS n FROM trades WHERE symbol IN ('BTC-USD', 'ETH-USD') "
        "GROUP BY symbol ORDER BY symbol"
    )
    async with AsyncClient(server.url, token) as client:
        rows = [row async for row in client.query_rows(sql)]
        names = [event.name async for event in client.query(sql)]
    assert [row["symbol"] for row in rows] == ["BTC-USD", "ETH-USD"]
    assert all(isinstance(row["n"], int) and row["n"] > 0 for row in rows)
    assert names[0] == "query_started" and names[-1] == "query_completed"
    assert "query_response" in names
    assert set(names) <= {"query_started", "query_progress", "query_response", "query_completed"}


async def test_wire_errors_raise_exceptions_carrying_their_code(server, token):
    async with AsyncClient(server.url, token) as client:
        with pytest.raises(NotFound) as unknown:
            await client.candles("NOPE-USD", "1m")
        assert unknown.value.code == "NOT_FOUND" and unknown.value.event == "market_data_error"
        with pytest.raises(LedgerCoreError) as bad_sql:
            [row async for row in client.query_rows("DELETE FROM trades")]
        assert bad_sql.value.code == "VALIDATION_FAILED" and bad_sql.value.event == "query_error"
        with pytest.raises(ValidationFailed) as invalid:
            await client.call("subscribe", {"room": ROOM, "extra": 1}, "subscribed")
        assert invalid.value.code == "VALIDATION_FAILED"
        with pytest.raises(NotFound):
            await client.call("no_such_event", {}, "never")
        # The connection is still usable after every error.
        assert await client.ping() > 0


async def test_a_dropped_connection_reconnects_and_recovers_the_room_events_it_missed(server, token):
    async with AsyncClient(server.url, token) as client:
        await client.subscribe(ROOM)
        await asyncio.to_thread(broadcast, server, "before")
        before = await client.next_event("application_broadcast")
        assert before.data["message"] == "before"
        async with client.offline():
            for n in range(3):
                await asyncio.to_thread(broadcast, server, f"missed {n}")
        got = [(await client.next_event("application_broadcast")) for _ in range(3)]
        assert [event.data["message"] for event in got] == ["missed 0", "missed 1", "missed 2"]
        offsets = [event.offset for event in got]
        assert offsets == sorted(offsets) and before.offset is not None and offsets[0] > before.offset
        assert client.reconnects == 1
        await asyncio.to_thread(broadcast, server, "after")
        assert (await client.next_event("application_broadcast")).data["message"] == "after"
        assert await client.ping() > 0


async def test_the_personal_room_is_recovered_with_since_offset_on_reconnect(server, token):
    async with AsyncClient(server.url, token) as client:
        await client.get_balance()
        user_room = f"user:{client.user_id}"
        epoch, offset = client.positions[user_room]
        async with client.offline():
            pass
        # Reconnected with sinceOffset/sinceEpoch: same epoch, never behind.
        assert client.reconnects == 1
        assert client.positions[user_room][0] == epoch
        assert client.positions[user_room][1] >= offset
        assert await client.ping() > 0


async def test_a_closed_client_refuses_requests_and_a_bad_token_is_unauthorized(server, token):
    client = AsyncClient(server.url, token, reconnect=False)
    await client.connect()
    await client.close()
    with pytest.raises(ConnectionLost) as lost:
        await client.ping()
    assert lost.value.code == "CONNECTION_LOST"
    with pytest.raises(Unauthorized) as refused:
        await AsyncClient(server.url, token[:-4] + "AAAA").connect()
    assert refused.value.code == "UNAUTHORIZED"


def test_the_blocking_client_streams_rows_and_pings(server, token):
    with Client(server.url, token) as client:
        assert client.ping() > 0
        rows = list(
            client.query_rows("SELECT symbol FROM trades WHERE symbol LIKE '%-USD' GROUP BY symbol ORDER BY symbol")
        )
        assert rows == [{"symbol": "BTC-USD"}, {"symbol": "ETH-USD"}]
        assert client.get_balance()["applicationId"] == "app_demo"


async def test_a_charged_query_moves_the_balance_through_pushed_credit_events(server, token):
    async with AsyncClient(server.url, token) as client:
        before = (await client.get_balance())["newBalance"]
        [row async for row in client.query_rows("SELECT 1 AS one")]
        deducted = await client.next_event("credits_deducted", timeout=30)
        assert deducted.data["action"] == "query" and deducted.data["amount"] == QUERY_PRICE
        assert deducted.room == f"user:{client.user_id}" and deducted.offset is not None
        while client.balance is None or client.balance["newBalance"] != before - QUERY_PRICE:
            await client.next_event("credit_balance_updated", timeout=30)
        assert (await client.get_balance())["newBalance"] == before - QUERY_PRICE


async def test_chat_streams_its_answer_as_deltas(server, token):
    async with AsyncClient(server.url, token) as client:
        deltas = [delta async for delta in client.chat("how many trades of BTC-USD in the last 24 hours?")]
        events = [event async for event in client.chat_events("and for ETH-USD?", "sdk-chat-1")]
    assert len(deltas) > 1 and "".join(deltas).strip()
    names = [event.name for event in events]
    assert names[0] == "chat_typing" and names[-1] == "chat_response"
    final = next(event for event in events if event.name == "chat_message" and event.data["isFinal"])
    streamed = "".join(event.data["delta"] for event in events if event.name == "chat_message")
    assert final.data["content"] == streamed
    assert events[-1].data["conversationId"] == "sdk-chat-1"


async def test_analysis_progress_then_the_score(server, token):
    address = "0x000000000000000000000000000000000000dEaD"
    async with AsyncClient(server.url, token) as client:
        events = [event async for event in client.analyse(address, "ethereum", hops=1)]
    names = [event.name for event in events]
    assert names[0] == "address_analysis_started" and names[-1] == "address_analysis_completed"
    pcts = [event.data["pct"] for event in events if event.name == "address_analysis_progress"]
    assert pcts and pcts == sorted(pcts)
    response = next(event.data for event in events if event.name == "address_analysis_response")
    assert response["riskLevel"] in {"low", "medium", "high", "severe"} and 0 <= response["riskScore"] <= 100

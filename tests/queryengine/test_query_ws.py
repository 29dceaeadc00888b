"""The query events over a real WebSocket: the event sequence, chunks,
refusals, cancellation (by event and by closing the socket), time limits
with their refund, charging and tenancy."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from accounts import services as accounts
from accounts.models import Application, Membership
from credits import services as credits
from queryengine.models import QueryLimits, QueryRecord
from tests.factories import funded
from tests.wsclient import connected, frames_until, unique

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = credits.Actor.system()
SLOW_SQL = (
    "SELECT count(*) FROM credit_entries a, credit_entries b, credit_entries c, credit_entries d, "
    "credit_entries e, credit_entries f"
)


@database_sync_to_async
def fund(user_id: str, grants: int = 3, amount: int = 100) -> tuple[int, str]:
    user, app = funded(user_id, *(amount + index for index in range(grants)))
    return user.pk, app


DONE = {"query_completed", "query_error"}


async def test_query_streams_started_chunks_and_completed_with_only_the_callers_rows(live_server_url, settings):
    settings.LEDGERCORE_QUERY_CHUNK_ROWS = 2
    me, other = unique("analyst"), unique("neighbour")
    await fund(other, grants=4)
    await fund(me, grants=5)
    async with await connected(live_server_url, me) as client:
        await client.send("query", {"sql": "SELECT sequence, amount FROM credit_entries ORDER BY sequence"}, id="q1")
        frames = await frames_until(client, "q1", DONE)
    events = [f["event"] for f in frames]
    assert events == ["query_started", "query_response", "query_response", "query_response", "query_completed"]
    query_id = frames[0]["data"]["queryId"]
    assert all(f["data"]["queryId"] == query_id for f in frames)
    assert isinstance(frames[0]["data"]["estimatedMs"], int)
    rows = [row for f in frames if f["event"] == "query_response" for row in f["data"]["rows"]]
    assert rows == [[1, 100], [2, 101], [3, 102], [4, 103], [5, 104]]  # never the neighbour's 4 entries
    assert frames[1]["data"]["schema"][0]["name"] == "sequence"
    assert frames[-1]["data"] == {
        "queryId": query_id,
        "durationMs": frames[-1]["data"]["durationMs"],
        "totalRows": 5,
        "truncated": False,
    }


async def test_params_are_bound_not_interpolated(live_server_url):
    me = unique("analyst")
    await fund(me, grants=3)
    async with await connected(live_server_url, me) as client:
        await client.send(
            "query",
            {"sql": "SELECT amount FROM credit_entries WHERE amount > :low ORDER BY amount", "params": {"low": 100}},
            id="named",
        )
        named = await frames_until(client, "named", DONE)
        await client.send(
            "query", {"sql": "SELECT count(*) FROM credit_entries WHERE reason = ?", "params": ["x' OR 1=1 --"]}, id="q"
        )
        positional = await frames_until(client, "q", DONE)
    assert [f["data"]["rows"] for f in named if f["event"] == "query_response"] == [[[101], [102]]]
    assert [f["data"]["rows"] for f in positional if f["event"] == "query_response"] == [[[0]]]


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("DELETE FROM credit_entries", "VALIDATION_FAILED"),
        ("SELECT 1; SELECT 2", "VALIDATION_FAILED"),
        ("SELECT * FROM auth_user", "UNAUTHORIZED"),
        ("SELECT * FROM credits_ledgerentry", "UNAUTHORIZED"),
        ("SELECT name FROM sqlite_master", "UNAUTHORIZED"),
        ("SELECT pg_sleep(10)", "UNAUTHORIZED"),
    ],
)
async def test_refused_sql_gets_started_then_query_error_and_the_connection_stays(live_server_url, sql, code):
    me = unique("analyst")
    async with await connected(live_server_url, me) as client:
        await client.send("query", {"sql": sql}, id="bad")
        frames = await frames_until(client, "bad", DONE)
        assert [f["event"] for f in frames] == ["query_started", "query_error"]
        error = frames[-1]["data"]
        assert error["code"] == code and error["message"]
        assert error["queryId"] == frames[0]["data"]["queryId"]
        assert (await client.request("ping"))["event"] == "pong"
    record = await database_sync_to_async(QueryRecord.objects.get)(pk=error["queryId"])
    assert record.status == "failed" and record.error_code == code


async def test_bad_payload_is_a_validation_error(live_server_url):
    async with await connected(live_server_url, unique("analyst")) as client:
        reply = await client.request("query", {"sql": "SELECT 1", "params": {"x": {"nested": 1}}})
        assert reply["event"] == "validation_error" and "params" in reply["data"]["errors"]
        reply = await client.request("query", {"sql": "SELECT 1", "extra": 1})
        assert reply["event"] == "validation_error" and "extra" in reply["data"]["errors"]


async def test_query_cancel_stops_the_query_within_a_second(live_server_url):
    me = unique("slow")
    await fund(me, grants=30, amount=1)
    async with await connected(live_server_url, me) as client:
        await client.send("query", {"sql": SLOW_SQL}, id="slow")
        started = await client.expect("query_started")
        query_id = started["data"]["queryId"]
        await asyncio.sleep(0.3)
        asked = asyncio.get_running_loop().time()
        await client.send("query_cancel", {"queryId": query_id}, id="stop")
        error = await client.expect("query_error", timeout=5, queryId=query_id, code="CANCELLED")
        assert asyncio.get_running_loop().time() - asked < 1.0
        assert error["id"] == "slow"
        reply = await client.request("query_cancel", {"queryId": query_id})
        assert (reply["event"], reply["data"]["code"]) == ("query_error", "NOT_FOUND")
    record = await database_sync_to_async(QueryRecord.objects.get)(pk=query_id)
    assert record.status == "cancelled"


async def test_closing_the_socket_cancels_its_query_and_releases_its_hold(live_server_url, settings):
    settings.LEDGERCORE_PRICES = {"query": 3}
    me = unique("slow")
    user_pk, app = await fund(me, grants=30, amount=1)
    client = await connected(live_server_url, me)
    before = client.balance["data"]["newBalance"]
    await client.send("query", {"sql": SLOW_SQL}, id="slow")
    query_id = (await client.expect("query_started"))["data"]["queryId"]
    await client.expect("credit_balance_updated", newBalance=before - 3)  # held while it runs
    await client.close()
    for _ in range(100):
        record = await database_sync_to_async(QueryRecord.objects.get)(pk=query_id)
        balance = await database_sync_to_async(credits.get_balance)(user_pk, app)
        if record.status not in ("queued", "running") and balance.balance == before:
            break
        await asyncio.sleep(0.05)
    assert record.status == "cancelled"
    assert balance.balance == before  # released at once, not when the hold expires


async def test_time_limit_is_a_timeout_and_the_charge_is_refunded(live_server_url, settings):
    settings.LEDGERCORE_PRICES = {"query": 3}
    me = unique("slow")
    user_pk, app = await fund(me, grants=30, amount=1)
    await database_sync_to_async(QueryLimits.objects.create)(application_id=app, time_limit_ms=400)
    async with await connected(live_server_url, me) as client:
        before = client.balance["data"]["newBalance"]
        await client.send("query", {"sql": SLOW_SQL}, id="slow")
        frames = await frames_until(client, "slow", DONE)
        assert frames[-1]["data"]["code"] == "TIMEOUT"
        progress = [f for f in frames if f["event"] == "query_progress"]
        assert all(f["data"]["queryId"] == frames[0]["data"]["queryId"] for f in progress)
        # hold then release: the balance comes back (30 grants, then entries 31 and 32)
        await client.expect("credit_balance_updated", newBalance=before - 3, sequence=31)
        await client.expect("credit_balance_updated", newBalance=before, sequence=32)
    balance = await database_sync_to_async(credits.get_balance)(user_pk, app)
    assert balance.balance == before


async def test_a_query_is_charged_and_refused_without_credits(live_server_url, settings):
    settings.LEDGERCORE_PRICES = {"query": 2}
    poor = unique("poor")
    async with await connected(live_server_url, poor) as client:
        reply = await client.request("query", {"sql": "SELECT count(*) FROM credit_entries"})
        assert reply["event"] == "insufficient_credits"
        assert reply["data"] == {"required": 2, "available": 0, "action": "query"}
    rich = unique("rich")
    await fund(rich, grants=1, amount=10)
    async with await connected(live_server_url, rich) as client:
        await client.send("query", {"sql": "SELECT count(*) FROM credit_entries"}, id="paid")
        frames = await frames_until(client, "paid", DONE)
        assert frames[-1]["event"] == "query_completed"
        await client.expect("credits_deducted", amount=2)


async def test_application_id_must_be_one_of_the_users_applications(live_server_url):
    me, stranger = unique("analyst"), unique("stranger")

    @database_sync_to_async
    def applications() -> tuple[str, str]:
        user = accounts.get_or_create_user(me)
        shared = Application.objects.create(name="team")
        Membership.objects.create(user=user, application=shared, role="member")
        credits.grant_credits(user.pk, shared.id, 7, reason="team budget", actor=SYSTEM)
        foreign = accounts.get_or_create_user(stranger).default_application_id
        assert foreign is not None
        return shared.id, foreign

    shared, foreign = await applications()
    await fund(me, grants=2)
    async with await connected(live_server_url, me) as client:
        reply = await client.request("query", {"sql": "SELECT 1", "applicationId": foreign})
        assert (reply["event"], reply["data"]["code"]) == ("query_error", "UNAUTHORIZED")
        await client.send("query", {"sql": "SELECT amount FROM credit_entries", "applicationId": shared}, id="team")
        frames = await frames_until(client, "team", DONE)
    assert [f["data"]["rows"] for f in frames if f["event"] == "query_response"] == [[[7]]]


async def test_query_catalog_lists_tables_columns_and_functions(live_server_url):
    async with await connected(live_server_url, unique("analyst")) as client:
        reply = await client.request("query_catalog")
    assert reply["event"] == "query_catalog_response"
    tables = {t["name"]: t for t in reply["data"]["tables"]}
    assert tables["credit_entries"]["scope"] == "private"
    assert {"sequence", "amount"} <= {c["name"] for c in tables["credit_entries"]["columns"]}
    assert "count" in reply["data"]["functions"]

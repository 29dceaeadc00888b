"""Token-bucket throttles per connection and per user, over a real WebSocket."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from realtime.config import parse_rate
from realtime.throttles import TokenBucket, retry_after_seconds
from tests.factories import team
from tests.wsclient import connected, unique

pytestmark = pytest.mark.django_db(transaction=True)


async def test_connection_budget_counts_every_frame_and_reports_retry_after(live_server_url, settings):
    settings.LEDGERCORE_THROTTLE_RATES = {**settings.LEDGERCORE_THROTTLE_RATES, "connection": "3/min"}
    client = await connected(live_server_url, unique("thr"))
    await client.send_raw("garbage")  # malformed frames count too
    assert (await client.recv())["event"] == "validation_error"
    assert (await client.request("ping", id=1))["event"] == "pong"
    assert (await client.request("ping", id=2))["event"] == "pong"
    limited = await client.request("ping", id=3)
    assert limited["event"] == "rate_limit_error"
    assert limited["data"]["code"] == "RATE_LIMITED"
    assert limited["data"]["message"]
    # one token per 20 s at 3/min; the frame arrived right after the burst
    assert 1 <= limited["data"]["retryAfter"] <= 20
    await client.close()


async def test_throttled_request_is_not_executed(live_server_url, settings):
    watcher_id, user = unique("watch"), unique("thr")

    @database_sync_to_async
    def make_app() -> str:
        return team(watcher_id, user, name="t").id

    room = f"application:{await make_app()}"
    watcher = await connected(live_server_url, watcher_id)
    await watcher.request("subscribe", {"room": room})
    settings.LEDGERCORE_THROTTLE_RATES = {**settings.LEDGERCORE_THROTTLE_RATES, "connection": "2/min"}
    client = await connected(live_server_url, user)
    await client.request("ping")
    await client.request("ping")
    limited = await client.request("subscribe", {"room": room})
    assert limited["event"] == "rate_limit_error"
    await watcher.nothing(0.5)  # no user_joined_room: the subscribe never ran
    count = await watcher.request("subscribe", {"room": room})
    assert count["data"]["subscriberCount"] == 1
    await watcher.close(), await client.close()


async def test_user_budget_is_shared_by_all_connections_of_the_user(live_server_url, settings):
    settings.LEDGERCORE_THROTTLE_RATES = {**settings.LEDGERCORE_THROTTLE_RATES, "user": "4/min"}
    user = unique("shared")
    a = await connected(live_server_url, user)
    b = await connected(live_server_url, user)
    assert (await a.request("ping"))["event"] == "pong"
    assert (await b.request("ping"))["event"] == "pong"
    assert (await a.request("ping"))["event"] == "pong"
    assert (await b.request("ping"))["event"] == "pong"
    limited = await a.request("ping")
    assert limited["event"] == "rate_limit_error" and limited["data"]["retryAfter"] >= 1
    assert (await b.request("ping"))["event"] == "rate_limit_error"
    other = await connected(live_server_url, unique("other"))
    assert (await other.request("ping"))["event"] == "pong"  # another user's budget is untouched
    await a.close(), await b.close(), await other.close()


async def test_budget_refills_over_time(live_server_url, settings):
    settings.LEDGERCORE_THROTTLE_RATES = {**settings.LEDGERCORE_THROTTLE_RATES, "connection": "2/s"}
    client = await connected(live_server_url, unique("refill"))
    await client.request("ping"), await client.request("ping")
    assert (await client.request("ping"))["event"] == "rate_limit_error"
    await asyncio.sleep(1.1)
    assert (await client.request("ping"))["event"] == "pong"
    await client.close()


def test_token_bucket_allows_capacity_then_waits_for_refill():
    bucket = TokenBucket(*parse_rate("5/10s"))
    assert [bucket.take() for _ in range(5)] == [0.0] * 5
    wait = bucket.take()
    assert 1.9 < wait <= 2.0
    assert retry_after_seconds(wait) == 2
    assert retry_after_seconds(0.01) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/s", (20, 1.0)),
        ("100/5m", (100, 300.0)),
        ("10/min", (10, 60.0)),
        ("1/h", (1, 3600.0)),
        ("50/100ms", (50, 0.1)),
    ],
)
def test_rate_strings_parse(text, expected):
    capacity, period = parse_rate(text)
    assert (capacity, pytest.approx(period)) == (expected[0], pytest.approx(expected[1]))


@pytest.mark.parametrize("text", ["", "20", "x/s", "0/s", "10/fortnight", "-1/s"])
def test_bad_rate_strings_are_refused(text):
    with pytest.raises(ValueError):
        parse_rate(text)

"""Missed-event recovery over real sockets: room offsets and epochs, bounded
history, resubscribe with ``since``, the personal room at connect (credit
events), the seam between history and live under concurrent publishing,
live gaps filled from history, and ``recovered: false`` when the history
cannot cover a gap. Runs on both stacks (history in memory / in Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts import services as accounts
from compliance.addresses import normalize_chain_address
from credits import services as credits
from credits.events import flush_dispatcher
from devtools.servers import free_port
from marketdata import services as market
from realtime import history, push
from realtime.protocol import encode
from tests.factories import team
from tests.wsclient import Client, connected, dev_token, unique

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = credits.Actor.system()


@database_sync_to_async
def make_application(*user_ids: str) -> str:
    return team(*user_ids).id


def address_room() -> str:
    """A room of its own for a test, without presence events."""
    return "address:ethereum:" + normalize_chain_address("ethereum", "0x" + os.urandom(20).hex())


def payload(room: str, marker: Any) -> tuple[str, dict[str, Any]]:
    if room.startswith("address:"):
        _, chain, address = room.split(":")
        return "address_transactions_update", {"chain": chain, "address": address, "transactions": [marker]}
    application = room.partition(":")[2]
    body = {"applicationId": application, "message": "m", "data": {"marker": marker}, "sentBy": "t", "timestamp": 0}
    return "application_broadcast", body


async def publish(room: str, marker: Any) -> None:
    await push.broadcast(room, *payload(room, marker))


async def subscribe(client: Client, room: str, since: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"room": room}
    if since is not None:
        data["since"] = since
    reply = await client.request("subscribe", data, timeout=15)
    assert reply["event"] == "subscribed", reply
    return reply


async def room_events(client: Client, room: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The next ``count`` frames published to ``room`` (other frames kept)."""
    found: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(found)} of {count} events of {room}: {found[-3:]} (others: {kept[-3:]})"
        frame = await client.recv(timeout=remaining)
        (found if frame.get("room") == room and frame["event"] != "subscribed" else kept).append(frame)
    client.backlog[:0] = kept
    return found


def markers(frames: list[dict[str, Any]]) -> list[Any]:
    return [
        frame["data"]["transactions"][0] if "transactions" in frame["data"] else frame["data"]["data"]["marker"]
        for frame in frames
    ]


def position(frame: dict[str, Any]) -> dict[str, Any]:
    return {"offset": frame["offset"], "epoch": frame["epoch"]}


async def forget(room: str) -> None:
    """Lose the room's history and offset, as a Redis restart without
    persistence (or a new embedded process) does."""
    store = history.store()
    if isinstance(store, history.RedisHistory):
        await store.forget(room)
    else:
        store.forget(room)


# --- the wire --------------------------------------------------------------------


async def test_room_events_and_subscribed_carry_the_room_position(live_server_url):
    user = unique("pos")
    room = f"application:{await make_application(user)}"
    client = await connected(live_server_url, user)
    hello = client.hello
    assert hello["room"] == f"user:{user}" and isinstance(hello["epoch"], str) and hello["offset"] >= 0
    assert "recovered" not in hello
    reply = await subscribe(client, room)
    assert reply["data"] == {"room": room, "subscriberCount": 1}  # the reference payload, unchanged
    assert reply["room"] == room and "recovered" not in reply
    start, epoch = reply["offset"], reply["epoch"]
    for n in range(3):
        await publish(room, n)
    frames = await room_events(client, room, 3)
    # start + 1 is the user's own user_joined_room, which is not sent to it
    assert [f["offset"] for f in frames] == [start + 2, start + 3, start + 4]
    assert {f["epoch"] for f in frames} == {epoch}
    assert set(frames[0]) == {"event", "data", "room", "offset", "epoch"}
    assert frames[0]["data"]["applicationId"] == room.partition(":")[2]
    await client.nothing(0.5)
    await client.close()


# --- recovery ----------------------------------------------------------------------


async def test_missed_events_are_recovered_in_order_exactly_once_then_live(live_server_url):
    user = unique("rec")
    room = address_room()
    client = await connected(live_server_url, user)
    await subscribe(client, room)
    await publish(room, "seen")
    (last,) = await room_events(client, room, 1)
    await client.close()

    for n in range(5):
        await publish(room, n)
    client = await connected(live_server_url, user)
    reply = await subscribe(client, room, since=position(last))
    assert reply["recovered"] is True
    assert reply["offset"] == last["offset"] + 5 and reply["epoch"] == last["epoch"]
    missed = await room_events(client, room, 5)
    assert markers(missed) == [0, 1, 2, 3, 4]
    assert [f["offset"] for f in missed] == list(range(last["offset"] + 1, last["offset"] + 6))
    await publish(room, "live")
    (live,) = await room_events(client, room, 1)
    assert markers([live]) == ["live"] and live["offset"] == last["offset"] + 6
    await client.nothing(0.5)

    # Nothing missed: recovered, nothing resent.
    again = await subscribe(client, room, since=position(live))
    assert again["recovered"] is True and again["offset"] == live["offset"]
    await client.nothing(0.5)
    await client.close()


async def test_the_seam_between_history_and_live_under_concurrent_publishing(live_server_url, monkeypatch):
    user, watcher_user = unique("seam"), unique("watch")
    room = address_room()
    watcher = await connected(live_server_url, watcher_user)  # stays connected throughout
    watched = await subscribe(watcher, room)
    client = await connected(live_server_url, user)
    joined = await subscribe(client, room)
    await client.close()
    since = position(joined)

    publishers, per_publisher = 4, 60
    started = asyncio.Event()
    published = 0

    async def publisher(index: int) -> None:
        nonlocal published
        for n in range(per_publisher):
            await publish(room, f"{index}-{n}")
            published += 1
            if published >= publishers * per_publisher // 4:
                started.set()
            await asyncio.sleep(0.003)

    # Widen the seam: the history is read a while after the connection has
    # joined the room's group, so that many events published meanwhile come
    # both from the history and live.
    store = history.store()
    read = store.read
    window: list[int] = []

    async def slow_read(room_name: str, since: Any = None, upto: Any = None) -> Any:
        if room_name == room and since is not None and upto is None:
            before = published
            await asyncio.sleep(0.3)
            window.append(published - before)
        return await read(room_name, since, upto)

    monkeypatch.setattr(store, "read", slow_read)
    tasks = [asyncio.create_task(publisher(i)) for i in range(publishers)]
    await started.wait()
    client = await connected(live_server_url, user)  # reconnects while the publishers run
    reply = await subscribe(client, room, since=since)
    assert reply["recovered"] is True
    await asyncio.gather(*tasks)
    assert window and window[0] > 0, "no event was published while the history was being read"

    # The recovered part and the live part join without a gap or a repeat.
    total = publishers * per_publisher
    frames = await room_events(client, room, total, timeout=30)
    offsets = [f["offset"] for f in frames]
    assert offsets == list(range(since["offset"] + 1, since["offset"] + total + 1)), offsets
    got = markers(frames)
    assert sorted(got) == sorted(f"{i}-{n}" for i in range(publishers) for n in range(per_publisher))
    for i in range(publishers):  # each publisher's own order is kept
        mine = [m for m in got if m.startswith(f"{i}-")]
        assert mine == [f"{i}-{n}" for n in range(per_publisher)]
    await client.nothing(0.5)

    # The connection that never left saw every event once, in offset order.
    seen = await room_events(watcher, room, offsets[-1] - watched["offset"], timeout=30)
    assert [f["offset"] for f in seen] == list(range(watched["offset"] + 1, offsets[-1] + 1))
    await watcher.nothing(0.5)
    await client.close(), await watcher.close()


async def test_personal_room_credit_events_are_recovered_at_connect(live_server_url):
    user_id = unique("credit")
    client = await connected(live_server_url, user_id)
    app = client.hello["data"]["applicationId"]
    personal = f"user:{user_id}"
    assert client.hello["room"] == personal
    since = position(client.hello)
    await client.close()

    user = await database_sync_to_async(accounts.get_or_create_user)(user_id)
    for amount in (30, 12):
        await database_sync_to_async(credits.grant_credits)(user.pk, app, amount, reason="while away", actor=SYSTEM)
    assert await asyncio.to_thread(flush_dispatcher), "credit events were not pushed"

    query = f"sinceOffset={since['offset']}&sinceEpoch={since['epoch']}"
    client = await Client.connect(live_server_url, dev_token(user_id), query=query)
    hello = await client.recv(timeout=15)
    assert hello["event"] == "connected" and hello["recovered"] is True
    assert hello["room"] == personal and hello["epoch"] == since["epoch"]
    missed = await room_events(client, personal, 4)
    assert [(f["event"], f["data"]["sequence"]) for f in missed] == [
        ("credits_granted", 1),
        ("credit_balance_updated", 1),
        ("credits_granted", 2),
        ("credit_balance_updated", 2),
    ]
    assert [f["data"].get("amount") for f in missed[::2]] == [30, 12]
    assert [f["offset"] for f in missed] == list(range(since["offset"] + 1, since["offset"] + 5))
    assert hello["offset"] == missed[-1]["offset"]
    # Then the connection's own balance (a reply, not a room event).
    balance = await client.recv(timeout=15)
    assert balance["event"] == "credit_balance_updated" and "offset" not in balance
    assert balance["data"]["newBalance"] == 42
    await client.nothing(0.5)
    # Once connected, a subscribe of the personal room with since re-sends
    # everything after that position up to the connection's own.
    reply = await subscribe(client, personal, since={"offset": missed[1]["offset"], "epoch": since["epoch"]})
    assert reply["recovered"] is True and reply["offset"] == missed[-1]["offset"]
    assert await room_events(client, personal, 2) == missed[2:]
    await client.nothing(0.5)
    await client.close()

    # A stale or malformed position at connect: recovered false, nothing replayed.
    for query in (f"sinceOffset=0&sinceEpoch={'0' * 16}", "sinceOffset=x&sinceEpoch=y"):
        client = await Client.connect(live_server_url, dev_token(user_id), query=query)
        hello = await client.recv(timeout=15)
        assert hello["event"] == "connected" and hello["recovered"] is False, (query, hello)
        assert (await client.recv(timeout=15))["event"] == "credit_balance_updated"
        await client.nothing(0.3)
        await client.close()


async def test_an_epoch_change_answers_recovered_false_and_is_announced_live(live_server_url):
    user = unique("epoch")
    room = address_room()
    client = await connected(live_server_url, user)
    stayed = await connected(live_server_url, user)
    await subscribe(stayed, room)
    joined = await subscribe(client, room)
    await client.close()
    await publish(room, "lost-1")
    await forget(room)  # the history is gone (e.g. Redis restarted without persistence)
    await publish(room, "after")

    client = await connected(live_server_url, user)
    reply = await subscribe(client, room, since=position(joined))
    assert reply["recovered"] is False
    assert reply["epoch"] != joined["epoch"] and reply["offset"] == 1
    await client.nothing(0.5)  # nothing is replayed: the client refetches

    # The connection that stayed gets lost-1, then is told to refetch, then
    # the new epoch's event.
    first, resync, after = await room_events(stayed, room, 3)
    assert markers([first]) == ["lost-1"] and first["epoch"] == joined["epoch"]
    assert resync["event"] == "room_resync" and resync["data"] == {"room": room, "reason": "epoch_changed"}
    assert resync["recovered"] is False and resync["epoch"] == reply["epoch"] and resync["offset"] == 0
    assert markers([after]) == ["after"] and (after["epoch"], after["offset"]) == (reply["epoch"], 1)
    await publish(room, "next")
    for c in (client, stayed):
        (nxt,) = await room_events(c, room, 1)
        assert (nxt["epoch"], nxt["offset"], markers([nxt])) == (reply["epoch"], 2, ["next"])
    await client.close(), await stayed.close()


async def test_a_gap_past_the_history_bounds_answers_recovered_false(live_server_url, settings):
    settings.LEDGERCORE_HISTORY_SIZE = 5
    user = unique("bound")
    room = address_room()
    client = await connected(live_server_url, user)
    last = await subscribe(client, room)
    await client.close()

    for n in range(5):  # exactly the bound: still covered
        await publish(room, n)
    client = await connected(live_server_url, user)
    reply = await subscribe(client, room, since=position(last))
    assert reply["recovered"] is True
    assert markers(await room_events(client, room, 5)) == [0, 1, 2, 3, 4]
    last = reply
    await client.close()

    for n in range(6):  # one more than the history keeps
        await publish(room, n)
    client = await connected(live_server_url, user)
    reply = await subscribe(client, room, since=position(last))
    assert reply["recovered"] is False and reply["offset"] == last["offset"] + 6
    await client.nothing(0.5)
    await client.close()

    # The time bound: events older than LEDGERCORE_HISTORY_SECONDS are gone.
    settings.LEDGERCORE_HISTORY_SECONDS = 1.0
    await publish(room, "old")
    await asyncio.sleep(1.3)
    await publish(room, "new")
    client = await connected(live_server_url, user)
    reply = await subscribe(client, room, since={"offset": last["offset"] + 6, "epoch": last["epoch"]})
    assert reply["recovered"] is False
    # An offset the room never reached is not recoverable either.
    await client.nothing(0.3)
    ahead = await subscribe(client, room, since={"offset": reply["offset"] + 10, "epoch": reply["epoch"]})
    assert ahead["recovered"] is False
    await client.close()


async def test_a_live_event_lost_in_transit_is_filled_from_history(live_server_url, settings):
    user = unique("gap")
    room = address_room()
    client = await connected(live_server_url, user)
    joined = await subscribe(client, room)

    def base(marker: str) -> str:
        return encode(*payload(room, marker))

    # Numbered and kept, but never sent (as a message the channel layer
    # dropped); the next event reveals the gap, which the history fills.
    await history.store().publish(room, base("dropped"), None)
    await publish(room, "next")
    frames = await room_events(client, room, 2)
    assert markers(frames) == ["dropped", "next"]
    assert [f["offset"] for f in frames] == [joined["offset"] + 1, joined["offset"] + 2]

    # A gap the history no longer holds: room_resync, then the stream goes on.
    settings.LEDGERCORE_HISTORY_SIZE = 2
    for n in range(3):
        await history.store().publish(room, base(f"gone-{n}"), None)
    await publish(room, "after")
    resync, after = await room_events(client, room, 2)
    assert resync["event"] == "room_resync" and resync["data"]["reason"] == "history_gap"
    assert resync["recovered"] is False and resync["offset"] == joined["offset"] + 5
    assert markers([after]) == ["after"] and after["offset"] == joined["offset"] + 6
    await client.nothing(0.5)
    await client.close()


async def test_own_join_announcement_is_skipped_without_a_gap(live_server_url):
    user, other = unique("self"), unique("other")
    room = f"application:{await make_application(user, other)}"
    watcher = await connected(live_server_url, other)
    joined = await subscribe(watcher, room)
    client = await connected(live_server_url, user)
    mine = await subscribe(client, room)  # announced to the watcher, not to the user
    await publish(room, "x")
    (frame,) = await room_events(client, room, 1)
    assert frame["offset"] == mine["offset"] + 2  # its own user_joined_room is skipped
    await client.nothing(0.5)  # no room_resync for the skipped offset
    announced, published = await room_events(watcher, room, 2)
    # joined + 1 is the watcher's own announcement, not sent to the watcher
    assert announced["event"] == "user_joined_room" and announced["data"]["userId"] == user
    assert announced["offset"] == joined["offset"] + 2 and published["offset"] == frame["offset"]
    await client.close()
    (left,) = await room_events(watcher, room, 1)
    assert left["event"] == "user_left_room"
    await watcher.close()

    # Recovered events skip it too: the watcher's join, the broadcast, the
    # user's leave; not the user's own join.
    client = await connected(live_server_url, user)
    reply = await subscribe(client, room, since=position(joined))
    assert reply["recovered"] is True
    recovered = await room_events(client, room, 3)
    assert [(f["event"], f["offset"]) for f in recovered] == [
        ("user_joined_room", joined["offset"] + 1),
        ("application_broadcast", frame["offset"]),
        ("user_left_room", left["offset"]),
    ]
    await client.close()


async def test_rooms_computed_per_process_recover_by_resubscribing(live_server_url):
    await database_sync_to_async(market.ensure_listing)("binance", "BTC-USD")
    client = await connected(live_server_url, unique("chart"))
    room = "market:BTC-USD:1m"
    reply = await subscribe(client, room, since={"offset": 3, "epoch": "abc"})
    assert reply["recovered"] is False and "offset" not in reply and "epoch" not in reply
    await client.expect("market_chart_initial_data", timeout=15)
    plain = await subscribe(client, room)
    assert set(plain) == {"event", "data", "id"}
    await client.close()


async def test_subscribe_since_is_validated(live_server_url):
    client = await connected(live_server_url, unique("val"))
    for since in ({"offset": -1, "epoch": "e"}, {"offset": 1}, {"offset": 1, "epoch": "e", "x": 1}, "3"):
        reply = await client.request("subscribe", {"room": f"user:{client.hello['data']['userId']}", "since": since})
        assert reply["event"] == "validation_error", (since, reply)
        assert any(key.startswith("since") for key in reply["data"]["errors"]), reply
    await client.close()


def test_the_asyncapi_document_describes_positions_and_since():
    from realtime.asyncapi import build_document

    messages = build_document()["channels"]["ws"]["messages"]
    since = messages["subscribe"]["payload"]["properties"]["data"]["properties"]["since"]
    assert since["required"] == ["offset", "epoch"]
    for name in ("subscribed", "connected", "room_resync", "credits_granted", "user_joined_room"):
        assert {"room", "offset", "epoch", "recovered"} <= set(messages[name]["payload"]["properties"]), name
    assert set(messages["query_started"]["payload"]["properties"]) == {"event", "data", "id"}


# --- the Redis store across a real restart -----------------------------------------


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of the test's own, without persistence, restartable."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    args = [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        import redis

        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=port).ping():
                    return process
            except redis.ConnectionError:
                time.sleep(0.05)
        process.kill()
        raise RuntimeError("redis-server did not start")

    state = {"process": start()}

    def restart() -> None:
        state["process"].send_signal(signal.SIGKILL)
        state["process"].wait()
        state["process"] = start()

    yield f"redis://127.0.0.1:{port}/0", restart
    state["process"].kill()
    state["process"].wait()


async def test_redis_history_gets_a_new_epoch_after_a_restart_without_persistence(own_redis, settings):
    url, restart = own_redis
    settings.REDIS_URL = url
    settings.LEDGERCORE_REDIS_PREFIX = f"lcrec-{os.getpid()}"
    from realtime import redis as lcredis

    store = history.RedisHistory()
    room = "application:app_x"
    published = [await store.publish(room, json.dumps({"event": "e", "data": {"n": n}}), None) for n in range(3)]
    epoch = published[0][0]
    assert published == [(epoch, 1), (epoch, 2), (epoch, 3)]
    found = await store.read(room, history.Position(epoch, 1))
    assert found.recovered is True and found.top == 3
    assert [(e.offset, json.loads(e.base)["data"]["n"]) for e in found.entries] == [(2, 1), (3, 2)]

    await asyncio.to_thread(restart)
    lcredis._states.clear()  # the old connections died with the server
    after = await store.publish(room, json.dumps({"event": "e", "data": {"n": 9}}), None)
    assert after[0] != epoch and after[1] == 1
    lost = await store.read(room, history.Position(epoch, 3))
    assert lost.recovered is False and lost.epoch == after[0] and lost.entries == []
    lcredis._states.clear()


# --- events published together ------------------------------------------------


async def test_events_published_together_get_consecutive_offsets_reach_members_in_order_and_recover(live_server_url):
    sender, member, late = unique("many"), unique("manyb"), unique("manyc")
    room = f"application:{await make_application(sender, member, late)}"
    own = await connected(live_server_url, sender)
    other = await connected(live_server_url, member)
    await subscribe(own, room)
    await subscribe(other, room)
    (joined,) = await room_events(own, room, 1)  # member's user_joined_room
    base = joined["offset"]
    events = [payload(room, n) for n in range(6)]

    # One batch: consecutive offsets, one epoch, every frame in order.
    await push.broadcast_many(room, events)
    for client in (own, other):
        frames = await room_events(client, room, 6)
        assert markers(frames) == [0, 1, 2, 3, 4, 5]
        assert [f["offset"] for f in frames] == list(range(base + 1, base + 7))
        assert {f["epoch"] for f in frames} == {joined["epoch"]}
        assert {f["room"] for f in frames} == {room}
        assert frames[0] == {"event": events[0][0], "data": events[0][1], "room": room, **position(frames[0])}

    # Skipping a user: its connections advance past the batch without a gap.
    await push.broadcast_many(room, [payload(room, "a"), payload(room, "b")], skip_user=sender)
    await publish(room, "single")
    (after,) = await room_events(own, room, 1)
    assert markers([after]) == ["single"] and after["offset"] == base + 9
    skipped = await room_events(other, room, 3)
    assert markers(skipped) == ["a", "b", "single"]
    assert [f["offset"] for f in skipped] == [base + 7, base + 8, base + 9]
    for client in (own, other):
        await client.nothing(0.3)

    # Recovered from the history like single events, with the same frames.
    newcomer = await connected(live_server_url, late)
    reply = await subscribe(newcomer, room, since=position(joined))
    assert reply["recovered"] is True and reply["offset"] == base + 9
    assert await room_events(newcomer, room, 9) == [*frames, *skipped]
    await newcomer.nothing(0.3)
    for client in (own, other, newcomer):
        await client.close()

"""System events over a real WebSocket: connect, ping, rooms, presence, errors."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async

from marketdata import services as market
from tests.factories import team
from tests.wsclient import Client, connected, dev_token, unique

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_application(*user_ids: str) -> str:
    return team(*user_ids).id


async def test_connected_is_first_event_with_user_sid_and_epoch_ms(live_server_url):
    user = unique("alice")
    before = int(time.time() * 1000)
    client = await connected(live_server_url, user)
    data = client.hello["data"]
    assert data["userId"] == user
    assert isinstance(data["sid"], str) and len(data["sid"]) >= 16
    assert before - 1000 <= data["timestamp"] <= int(time.time() * 1000) + 1000
    assert data["applicationId"].startswith("app_")
    assert "id" not in client.hello
    await client.close()


async def test_each_connection_gets_its_own_sid(live_server_url):
    user = unique("alice")
    a, b = await connected(live_server_url, user), await connected(live_server_url, user)
    assert a.hello["data"]["sid"] != b.hello["data"]["sid"]
    await a.close(), await b.close()


async def test_connection_is_already_in_its_personal_room(live_server_url):
    user = unique("alice")
    first = await connected(live_server_url, user)
    second = await connected(live_server_url, user)
    reply = await second.request("subscribe", {"room": f"user:{user}"})
    # Both tabs were auto-joined; subscribing again is harmless.
    assert reply["event"] == "subscribed"
    assert reply["data"] == {"room": f"user:{user}", "subscriberCount": 2}
    await first.close(), await second.close()


@pytest.mark.parametrize("request_id", ["abc-1", 7, "x" * 64])
async def test_ping_answers_pong_echoing_the_request_id(live_server_url, request_id):
    client = await connected(live_server_url, unique("bob"))
    await client.send("ping", id=request_id)
    frame = await client.recv()
    assert frame["event"] == "pong" and frame["id"] == request_id
    assert abs(frame["data"]["timestamp"] - time.time() * 1000) < 5000
    await client.close()


async def test_ping_without_id_or_data_is_answered_without_id(live_server_url):
    client = await connected(live_server_url, unique("bob"))
    await client.send_raw('{"event": "ping"}')
    frame = await client.recv()
    assert frame["event"] == "pong" and "id" not in frame
    await client.close()


BAD_FRAMES = [
    ("not json", "frame"),
    ("[1, 2]", "frame"),
    ('"just a string"', "frame"),
    ('{"data": {}}', "event"),
    ('{"event": 5}', "event"),
    ('{"event": "ping", "data": [1]}', "data"),
    ('{"event": "ping", "id": {"a": 1}}', "id"),
    ('{"event": "ping", "id": true}', "id"),
    ('{"event": "ping", "id": "' + "x" * 65 + '"}', "id"),
    ('{"event": "ping", "extra": 1}', "extra"),
    ('{"event": "ping", "data": {"unexpected": 1}}', "unexpected"),
    ('{"event": "subscribe", "data": {}}', "room"),
    ('{"event": "subscribe", "data": {"room": 12}}', "room"),
    ('{"event": "subscribe", "data": {"room": "no-namespace"}}', "room"),
    ('{"event": "subscribe", "data": {"room": "application:has space"}}', "room"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_FRAMES)
async def test_bad_frames_get_validation_error_and_the_connection_stays_open(live_server_url, raw, field):
    client = await connected(live_server_url, unique("carol"))
    await client.send_raw(raw)
    frame = await client.recv()
    assert frame["event"] == "validation_error", frame
    assert frame["data"]["code"] == "VALIDATION_FAILED"
    assert field in frame["data"]["errors"], frame
    assert frame["data"]["message"]
    pong = await client.request("ping")
    assert pong["event"] == "pong"
    await client.close()


async def test_validation_error_names_the_event_and_echoes_a_valid_id(live_server_url):
    client = await connected(live_server_url, unique("carol"))
    frame = await client.request("subscribe", {"room": "user:x", "bogus": True}, id="req-9")
    assert frame["event"] == "validation_error"
    assert frame["data"]["event"] == "subscribe"
    assert frame["data"]["errors"] == {"bogus": ["Unknown field."]}
    await client.close()


async def test_binary_frames_are_rejected_with_validation_error(live_server_url):
    client = await connected(live_server_url, unique("carol"))
    await client.send_raw(b'{"event": "ping"}')
    frame = await client.recv()
    assert frame["event"] == "validation_error"
    assert "frame" in frame["data"]["errors"]
    assert (await client.request("ping"))["event"] == "pong"
    await client.close()


async def test_frames_over_the_size_limit_are_not_processed(live_server_url, settings):
    settings.LEDGERCORE_MAX_FRAME_BYTES = 1024
    client = await connected(live_server_url, unique("carol"))
    room = "application:" + "a" * 2000
    await client.send("subscribe", {"room": room}, id="big")
    frame = await client.recv()
    assert frame["event"] == "validation_error"
    assert "1024" in frame["data"]["message"]
    assert "id" not in frame  # the frame was not even parsed
    assert (await client.request("ping"))["event"] == "pong"
    await client.close()


async def test_unknown_event_is_not_found_with_id(live_server_url):
    client = await connected(live_server_url, unique("dan"))
    frame = await client.request("does_not_exist", {"a": 1}, id=42)
    assert frame == {
        "event": "error",
        "data": {"code": "NOT_FOUND", "message": "unknown event 'does_not_exist'"},
        "id": 42,
    }
    await client.close()


async def test_subscribe_and_unsubscribe_report_room_and_exact_count(live_server_url):
    a_user, b_user = unique("erin"), unique("frank")
    app = await make_application(a_user, b_user)
    room = f"application:{app}"
    a = await connected(live_server_url, a_user)
    b = await connected(live_server_url, b_user)
    first = await a.request("subscribe", {"room": room})
    assert first["event"] == "subscribed" and first["data"] == {"room": room, "subscriberCount": 1}
    second = await b.request("subscribe", {"room": room})
    assert second["data"]["subscriberCount"] == 2
    left = await b.request("unsubscribe", {"room": room})
    assert left["event"] == "unsubscribed" and left["data"] == {"room": room}
    again = await b.request("subscribe", {"room": room})
    assert again["data"]["subscriberCount"] == 2
    await a.close(), await b.close()


async def test_subscribing_twice_is_harmless(live_server_url):
    user = unique("gina")
    app = await make_application(user)
    client = await connected(live_server_url, user)
    room = f"application:{app}"
    one = await client.request("subscribe", {"room": room})
    two = await client.request("subscribe", {"room": room})
    assert one["data"]["subscriberCount"] == two["data"]["subscriberCount"] == 1
    await client.close()


async def test_unsubscribing_from_a_room_not_joined_answers_unsubscribed(live_server_url):
    user = unique("gina")
    app = await make_application(user)
    client = await connected(live_server_url, user)
    frame = await client.request("unsubscribe", {"room": f"application:{app}"})
    assert frame["event"] == "unsubscribed"
    await client.close()


async def test_personal_room_of_someone_else_is_unauthorized(live_server_url):
    client = await connected(live_server_url, unique("hank"))
    frame = await client.request("subscribe", {"room": "user:someone_else"})
    assert frame["event"] == "error" and frame["data"]["code"] == "UNAUTHORIZED"
    assert (await client.request("ping"))["event"] == "pong"
    await client.close()


async def test_application_room_requires_membership(live_server_url, alice, outsider):
    app = alice.default_application_id
    client = await connected(live_server_url, outsider.username)
    frame = await client.request("subscribe", {"room": f"application:{app}"})
    assert frame["event"] == "error" and frame["data"]["code"] == "UNAUTHORIZED"
    missing = await client.request("subscribe", {"room": "application:app_does_not_exist"})
    assert missing["data"]["code"] == "UNAUTHORIZED"
    await client.close()


async def test_unknown_room_namespace_is_not_found(live_server_url):
    client = await connected(live_server_url, unique("kim"))
    frame = await client.request("subscribe", {"room": "galaxy:andromeda"})
    assert frame["event"] == "error" and frame["data"]["code"] == "NOT_FOUND"
    await client.close()


async def test_personal_room_cannot_be_left(live_server_url):
    user = unique("lee")
    client = await connected(live_server_url, user)
    frame = await client.request("unsubscribe", {"room": f"user:{user}"})
    assert frame["event"] == "validation_error" and "room" in frame["data"]["errors"]
    await client.close()


async def test_presence_first_connection_joins_and_last_connection_leaves(live_server_url):
    watcher_id, guest_id = unique("mia"), unique("ned")
    app = await make_application(watcher_id, guest_id)
    room = f"application:{app}"
    watcher = await connected(live_server_url, watcher_id)
    await watcher.request("subscribe", {"room": room})

    tab1 = await connected(live_server_url, guest_id)
    before = int(time.time() * 1000)
    assert (await tab1.request("subscribe", {"room": room}))["data"]["subscriberCount"] == 2
    joined = await watcher.expect("user_joined_room")
    assert joined["data"]["userId"] == guest_id and joined["data"]["room"] == room
    assert joined["data"]["joinedAt"] >= before - 1000
    assert "id" not in joined
    await tab1.nothing()  # the joiner is not told about itself

    tab2 = await connected(live_server_url, guest_id)
    assert (await tab2.request("subscribe", {"room": room}))["data"]["subscriberCount"] == 3
    await watcher.nothing()  # a second tab of the same user is no event

    await tab1.request("unsubscribe", {"room": room})
    await watcher.nothing()  # the user still has a tab in the room

    await tab2.close()  # closing the last tab is leaving
    left = await watcher.expect("user_left_room")
    assert left["data"]["userId"] == guest_id and left["data"]["room"] == room
    assert isinstance(left["data"]["leftAt"], int)
    count = await watcher.request("subscribe", {"room": room})
    assert count["data"]["subscriberCount"] == 1
    await watcher.close(), await tab1.close()


async def test_unsubscribe_of_last_tab_announces_leave(live_server_url):
    watcher_id, guest_id = unique("olga"), unique("pat")
    app = await make_application(watcher_id, guest_id)
    room = f"application:{app}"
    watcher = await connected(live_server_url, watcher_id)
    guest = await connected(live_server_url, guest_id)
    await watcher.request("subscribe", {"room": room})
    await guest.request("subscribe", {"room": room})
    await watcher.expect("user_joined_room", userId=guest_id)
    await guest.request("unsubscribe", {"room": room})
    left = await watcher.expect("user_left_room")
    assert left["data"]["userId"] == guest_id
    await guest.nothing()
    await watcher.close(), await guest.close()


async def test_events_after_leaving_a_room_are_not_delivered(live_server_url):
    a_id, b_id, c_id = unique("quinn"), unique("rose"), unique("sam")
    app = await make_application(a_id, b_id, c_id)
    room = f"application:{app}"
    a = await connected(live_server_url, a_id)
    b = await connected(live_server_url, b_id)
    c = await connected(live_server_url, c_id)
    await a.request("subscribe", {"room": room})
    await a.request("unsubscribe", {"room": room})
    await b.request("subscribe", {"room": room})
    await c.request("subscribe", {"room": room})
    await b.expect("user_joined_room", userId=c_id)
    await a.nothing()
    await a.close(), await b.close(), await c.close()


async def test_connection_bound_to_requested_member_application(live_server_url):
    user = unique("tom")
    app = await make_application(user)
    by_param = await connected(live_server_url, user, query=f"applicationId={app}")
    assert by_param.hello["data"]["applicationId"] == app
    from tests.wsclient import dev_token

    by_claim = await Client.connect(live_server_url, dev_token(user, app))
    assert (await by_claim.recv())["data"]["applicationId"] == app
    await by_param.close(), await by_claim.close()


async def test_unexpected_server_failure_is_internal_logged_with_request_id(live_server_url, monkeypatch, caplog):
    from dataclasses import replace

    from realtime.registry import registry

    async def broken(ctx, data):
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(registry.inbound_events, "ping", replace(registry.inbound_events["ping"], handler=broken))
    client = await connected(live_server_url, unique("uma"))
    frame = await client.request("ping", id="req-internal-1")
    assert frame["event"] == "error"
    assert frame["data"]["code"] == "INTERNAL"
    assert "boom" not in frame["data"]["message"]
    monkeypatch.undo()
    assert (await client.request("ping"))["event"] == "pong"
    assert any("req-internal-1" in r.getMessage() and r.exc_info for r in caplog.records)
    await client.close()


async def test_frames_are_utf8_json_objects(live_server_url):
    client = await connected(live_server_url, unique("vera"))
    await client.ws.send(json.dumps({"event": "ping", "id": "ünïcødé"}))
    raw = await client.ws.recv()
    assert isinstance(raw, str)
    assert json.loads(raw)["id"] == "ünïcødé"
    await client.close()


@pytest.mark.parametrize(
    ("room", "expected"),
    [
        ("market:BTC-USD:1s", "subscribed"),
        ("market:BTC-USD:100ms", "subscribed"),
        ("market:BTC-USD:7s", "validation_error"),
        ("market:btcusd:1m", "validation_error"),
        ("market:NOSUCH-USD:1m", "error"),
        ("address:ethereum:0x" + "ab" * 20, "subscribed"),
        ("address:bitcoin:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "subscribed"),
        ("address:ethereum:0x123", "validation_error"),
        ("address:dogechain:abc", "error"),
    ],
)
async def test_public_rooms_are_open_to_any_user_with_well_formed_names(live_server_url, room, expected):
    await database_sync_to_async(market.ensure_listing)("binance", "BTC-USD")
    client = await connected(live_server_url, unique("pub"))
    frame = await client.request("subscribe", {"room": room})
    assert frame["event"] == expected, frame
    if frame["event"] == "error":
        assert frame["data"]["code"] == "NOT_FOUND"
    await client.close()


async def test_public_rooms_count_subscribers_without_presence_events(live_server_url):
    symbol = f"{unique('X').upper().replace('_', '')[:12]}-USD"
    await database_sync_to_async(market.ensure_listing)("binance", symbol)
    room = f"market:{symbol}:1m"
    a = await connected(live_server_url, unique("pa"))
    b = await connected(live_server_url, unique("pb"))
    assert (await a.request("subscribe", {"room": room}))["data"]["subscriberCount"] == 1
    await a.expect("market_chart_initial_data")
    assert (await b.request("subscribe", {"room": room}))["data"]["subscriberCount"] == 2
    await b.expect("market_chart_initial_data")
    await a.nothing()
    await b.close()
    await a.nothing()
    await a.close()


async def test_idle_connection_stays_up_and_receives_room_events(live_server_url):
    """Idle for longer than the channel layer's blocking-receive timeout."""
    watcher_id, guest_id = unique("idle"), unique("late")
    app = await make_application(watcher_id, guest_id)
    room = f"application:{app}"
    watcher = await connected(live_server_url, watcher_id)
    await watcher.request("subscribe", {"room": room})
    await asyncio.sleep(12)
    guest = await connected(live_server_url, guest_id)
    await guest.request("subscribe", {"room": room})
    assert (await watcher.expect("user_joined_room"))["data"]["userId"] == guest_id
    assert (await watcher.request("ping"))["event"] == "pong"
    await watcher.close(), await guest.close()


async def test_a_failing_throttle_store_is_internal_and_the_connection_stays(live_server_url, monkeypatch):
    from realtime import throttles

    class Broken:
        async def take(self, throttle_class, user_id):
            raise ConnectionError("throttle store down")

    client = await connected(live_server_url, unique("store"))
    monkeypatch.setattr(throttles, "_users", Broken())
    await client.send("ping", id="x")
    frame = await client.recv()
    assert frame["event"] == "error" and frame["data"]["code"] == "INTERNAL"
    monkeypatch.undo()
    assert (await client.request("ping"))["event"] == "pong"
    await client.close()


async def test_authentication_infrastructure_failure_is_internal_close(live_server_url, monkeypatch):
    from accounts import services

    def down(*args, **kwargs):
        raise ConnectionError("database down")

    monkeypatch.setattr(services, "bind", down)
    client = await Client.connect(live_server_url, dev_token(unique("db")))
    frame = await client.recv()
    assert frame["event"] == "error" and frame["data"]["code"] == "INTERNAL"
    import websockets

    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


async def test_many_connections_pinging_at_once_all_get_pong(live_server_url):
    """Concurrent requests share bounded stores (Redis pools) without errors."""
    clients = []
    for _ in range(5):  # connected in waves: the pings, not the handshakes, are the load here
        clients += await asyncio.gather(*(connected(live_server_url, unique("crowd")) for _ in range(40)))
    await asyncio.gather(*(c.send("ping", id="p") for c in clients))
    replies = await asyncio.gather(*(c.recv(timeout=30) for c in clients))
    assert {r["event"] for r in replies} == {"pong"}, [r for r in replies if r["event"] != "pong"][:3]
    await asyncio.gather(*(c.close() for c in clients))

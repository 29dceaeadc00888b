"""Room fan-out once per process (realtime.fanout), over real sockets: the
room's channel-layer group holds one channel per server process however many
of its connections are in the room, so a room event is one channel-layer
message per process; every member still gets each event once, in offset
order; the process leaves the group with its last member. On one process
(both stacks) and on two daphne processes sharing Redis (scaled)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from devtools.rawws import RawWebSocket
from realtime import fanout as fanout_module
from realtime import lifecycle, push
from realtime.fanout import fanout
from realtime.rooms import group_name
from tests.factories import team
from tests.wsclient import Client, connected, dev_token, post_broadcast, unique

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_application(*user_ids: str, owner: str | None = None) -> str:
    return team(*user_ids, owner=owner).id


async def group_members(room: str) -> int:
    """How many channels the room's channel-layer group holds."""
    layer = get_channel_layer()
    group = group_name(room)
    if hasattr(layer, "groups"):  # the in-memory layer
        return len(layer.groups.get(group, {}))
    connection = layer.connection(layer.consistent_hash(group))
    return int(await connection.zcard(layer._group_key(group)))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def broadcasts(client: Client, room: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"got {len(frames)} of {count}"
        frame = await client.recv(timeout=remaining)
        if frame.get("room") == room and frame["event"] == "application_broadcast":
            frames.append(frame)
    return frames


def body(room: str, marker: int) -> dict[str, Any]:
    application = room.partition(":")[2]
    return {"applicationId": application, "message": "m", "data": {"marker": marker}, "sentBy": "t", "timestamp": 0}


async def test_one_group_member_and_one_message_per_process_for_many_connections(live_server_url):
    users = [unique("fan") for _ in range(3)]
    room = f"application:{await make_application(*users)}"
    # Five connections in the room: two users twice, one once.
    clients = [await connected(live_server_url, user) for user in (*users, users[0], users[1])]
    for client in clients:
        reply = await client.request("subscribe", {"room": room}, timeout=15)
        assert reply["event"] == "subscribed"
    assert fanout.count(room) == 5
    assert await group_members(room) == 1

    received = fanout.events
    for n in range(10):
        await push.broadcast(room, "application_broadcast", body(room, n))
    for client in clients:
        frames = await broadcasts(client, room, 10)
        assert [f["data"]["data"]["marker"] for f in frames] == list(range(10))
        offsets = [f["offset"] for f in frames]
        assert offsets == list(range(offsets[0], offsets[0] + 10))
        await client.nothing(0.3)
    # One channel-layer message per event reached the process.
    assert fanout.events - received == 10

    # The process stays in the group while one of its connections is.
    for client in clients[:-1]:
        await client.close()
    await eventually(lambda: _equals(fanout.count(room), 1))
    assert await group_members(room) == 1
    await push.broadcast(room, "application_broadcast", body(room, 10))
    (last,) = await broadcasts(clients[-1], room, 1)
    assert last["data"]["data"]["marker"] == 10
    await clients[-1].request("unsubscribe", {"room": room}, timeout=15)
    assert fanout.count(room) == 0
    await eventually(lambda: _group_is(room, 0))
    await clients[-1].close()


async def test_a_member_that_is_closing_does_not_stop_the_others(live_server_url):
    users = [unique("fan") for _ in range(4)]
    room = f"application:{await make_application(*users)}"
    clients = [await connected(live_server_url, user) for user in users]
    for client in clients:
        await client.request("subscribe", {"room": room}, timeout=15)
    # Two sockets drop without a close handshake while events are published.
    for client in clients[:2]:
        client.ws.transport.abort()
    for n in range(20):
        await push.broadcast(room, "application_broadcast", body(room, n))
    for client in clients[2:]:
        frames = await broadcasts(client, room, 20)
        assert [f["data"]["data"]["marker"] for f in frames] == list(range(20))
    await eventually(lambda: _equals(fanout.count(room), 2))
    for client in clients[2:]:
        await client.close()
    await eventually(lambda: _group_is(room, 0))


async def test_a_drain_close_follows_the_room_events_published_before_it(live_server_url):
    """The close of a draining connection (realtime.lifecycle) goes behind
    the room events the process received before it: none is lost to it."""
    user = unique("fan")
    room = f"application:{await make_application(user)}"
    client = await connected(live_server_url, user)
    await client.request("subscribe", {"room": room}, timeout=15)
    consumer = next(c for c in lifecycle.live() if c.user_id == user)
    close = {"type": "lifecycle.close", "code": 1001, "reason": "draining"}

    async def publish_then_close() -> None:
        # The connection's stream is busy (as while it answers a
        # subscription): the events wait in its backlog, and the close must
        # wait behind them.
        async with consumer.streams.lock:
            for n in range(300):
                await push.broadcast(room, "application_broadcast", body(room, n))
            await fanout.close_after_events(consumer, close)
            await asyncio.sleep(0.5)

    # On the server's event loop (the test server runs in a thread).
    assert fanout._loop is not None
    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(publish_then_close(), fanout._loop))
    markers = []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            frame = await client.recv(timeout=20)
            if frame.get("room") == room:
                markers.append(frame["data"]["data"]["marker"])
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert markers == list(range(300))


async def _equals(a: int, b: int) -> bool:
    return a == b


async def _group_is(room: str, count: int) -> bool:
    return await group_members(room) == count


# --- two processes on Redis --------------------------------------------------------


def post_marker(http: str, application: str, owner: str, marker: int) -> None:
    post_broadcast(http, application, owner, {"marker": marker})


@pytest.mark.redis_stack
async def test_one_group_member_per_process_across_two_processes(servers):
    a, b = servers
    owner = unique("owner")
    users = [unique("fan") for _ in range(4)]
    application = await make_application(*users, owner=owner)
    room = f"application:{application}"
    on_a = [await connected(a.url, user) for user in (*users[:2], users[0])]
    on_b = [await connected(b.url, user) for user in users[2:]]
    for client in (*on_a, *on_b):
        await client.request("subscribe", {"room": room}, timeout=15)
    # Five connections, two processes: two channels in the group.
    assert await group_members(room) == 2

    for n in range(10):
        await asyncio.to_thread(post_marker, (a, b)[n % 2].http, application, owner, n)
    for client in (*on_a, *on_b):
        frames = await broadcasts(client, room, 10, timeout=30)
        assert [f["data"]["data"]["marker"] for f in frames] == list(range(10))
        offsets = [f["offset"] for f in frames]
        assert offsets == sorted(set(offsets))
        await client.nothing(0.3)

    # A's connections leave: A leaves the group, B stays and still gets events.
    for client in on_a:
        await client.close()
    await eventually(lambda: _group_is(room, 1), timeout=15)
    await asyncio.to_thread(post_marker, a.http, application, owner, 10)
    for client in on_b:
        (frame,) = await broadcasts(client, room, 1, timeout=30)
        assert frame["data"]["data"]["marker"] == 10
        await client.close()
    await eventually(lambda: _group_is(room, 0), timeout=15)


def stalls(server: Any) -> float:
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=10) as response:
        exposition = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("ledgercore_outbound_stalls_total ")
    )


@pytest.mark.redis_stack
async def test_events_published_together_wait_for_a_stalled_socket_in_order(servers):
    """Batches to a room on a daphne process: a client that reads nothing
    (a tiny receive buffer) stalls while a thousand events (~300 KB, under
    its limits) are published in batches of ten; it is not closed, and
    once it reads it gets every one, in offset order, as a reader did."""
    a, _ = servers
    slow_user, reader_user = unique("stall"), unique("reader")
    application = await make_application(slow_user, reader_user)
    room = f"application:{application}"
    reader = await connected(a.url, reader_user)
    await reader.request("subscribe", {"room": room}, timeout=15)
    slow = await asyncio.to_thread(RawWebSocket, "127.0.0.1", a.port, f"/ws?token={dev_token(slow_user)}", rcvbuf=4096)
    await asyncio.to_thread(slow.send_event, "subscribe", {"room": room}, "s")
    assert (await asyncio.to_thread(slow.reply, "s"))["event"] == "subscribed"
    before = await asyncio.to_thread(stalls, a)
    pad = "x" * 200
    for batch in range(100):
        events = [("application_broadcast", {**body(room, batch * 10 + n), "pad": pad}) for n in range(10)]
        await push.broadcast_many(room, events)
    seen = await broadcasts(reader, room, 1000, timeout=60)
    assert [f["data"]["data"]["marker"] for f in seen] == list(range(1000))
    assert await asyncio.to_thread(stalls, a) > before

    def read_all() -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        while len(frames) < 1000:
            frame = slow.recv_event(timeout=30)
            if frame["event"] == "application_broadcast":
                frames.append(frame)
        return frames

    frames = await asyncio.to_thread(read_all)
    assert [f["data"]["data"]["marker"] for f in frames] == list(range(1000))
    assert [f["offset"] for f in frames] == [f["offset"] for f in seen]
    assert "closing slow consumer" not in a.logs()
    slow.close()
    await reader.close()


async def test_a_room_whose_members_stay_keeps_its_group_past_the_layers_group_expiry(live_server_url):
    """No one joins for longer than the layer keeps a group membership: the
    process's refresher adds its channel again, and the room's events still
    reach the members who stayed."""
    user = unique("stay")
    room = f"application:{await make_application(user)}"
    client = await connected(live_server_url, user)
    assert (await client.request("subscribe", {"room": room}, timeout=15))["event"] == "subscribed"
    layer = get_channel_layer()
    group = group_name(room)

    async def age_the_membership() -> None:
        # As if the process had joined the group more than a day ago.
        fanout._joined[room] -= fanout_module.REFRESH_SECONDS + 1
        old = int(time.time()) - layer.group_expiry - 10
        if hasattr(layer, "groups"):  # the in-memory layer
            layer.groups[group][fanout.channel] = old
            layer._next_clean = 0.0  # it looks at expiry on its next send
        else:
            connection = layer.connection(layer.consistent_hash(group))
            await connection.zadd(layer._group_key(group), {fanout.channel: old})

    async def aged_then(refresh: bool, marker: int) -> int:
        await age_the_membership()
        refreshed = await fanout.refresh() if refresh else 0
        await push.broadcast(room, "application_broadcast", body(room, marker))
        return refreshed

    def on_server(work: Awaitable[Any]) -> Awaitable[Any]:
        # On the server's event loop (the test server runs in a thread).
        assert fanout._loop is not None
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, fanout._loop))  # type: ignore[arg-type]

    assert await on_server(aged_then(refresh=True, marker=1)) == 1
    (frame,) = await broadcasts(client, room, 1)
    assert frame["data"]["data"]["marker"] == 1
    assert await on_server(fanout.refresh()) == 0  # refreshed just now

    # Without the refresh the layer ends the membership at the next send,
    # and the room's events reach no one.
    await on_server(aged_then(refresh=False, marker=2))
    await client.nothing(1.0)
    assert await group_members(room) == 0
    await client.close()

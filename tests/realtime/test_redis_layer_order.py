"""The scaled stack's channel layer on a real Redis (realtime.redis_layer):
room events are numbered and sent in one script, so that they reach each
process channel in offset order; events whose group sends came in another
order are handed on in offset order per room; a gap that is never filled
holds nothing back for good; the group send keeps the stock layer's
capacity rule."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import pytest
from django.conf import settings

from realtime import history, push
from realtime.push import ROOM_EVENT
from realtime.redis_layer import ResilientRedisChannelLayer, RoomOrder
from realtime.rooms import group_name

pytestmark = pytest.mark.redis_stack


def layer(**config: Any) -> ResilientRedisChannelLayer:
    base = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    options = {**base, **config}
    options["prefix"] = f"{settings.LEDGERCORE_REDIS_PREFIX}:order-{uuid.uuid4().hex[:8]}"
    return ResilientRedisChannelLayer(**options)


def event(room: str, offset: int, epoch: str = "e1") -> dict[str, Any]:
    return {"type": "room.event", "room": room, "epoch": epoch, "offset": offset, "text": f"t{offset}"}


async def received(channel_layer: ResilientRedisChannelLayer, channel: str, count: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(channel_layer.receive(channel), 10) for _ in range(count)]


async def test_room_events_sent_out_of_order_are_received_in_offset_order():
    channel_layer = layer()
    channel = await channel_layer.new_channel()
    await channel_layer.group_add("room.a", channel)
    await channel_layer.group_add("room.b", channel)
    try:
        # Two publishers: offset 2 of room a was sent before offset 1; room
        # b's events and a message of another type go through as they come.
        for message in (
            event("a", 1),
            event("a", 3),
            event("b", 7),
            event("a", 2),
            {"type": "fanout.close", "key": "k"},
            event("b", 8),
            event("a", 5),
            event("a", 4),
        ):
            group = f"room.{message['room']}" if "room" in message else None
            if group is None:
                await channel_layer.send(channel, message)
            else:
                await channel_layer.group_send(group, message)
        messages = await received(channel_layer, channel, 8)
        offsets = {room: [m["offset"] for m in messages if m.get("room") == room] for room in ("a", "b")}
        assert offsets == {"a": [1, 2, 3, 4, 5], "b": [7, 8]}
        assert [m["type"] for m in messages].count("fanout.close") == 1
    finally:
        await channel_layer.flush()


async def test_an_event_after_a_gap_that_is_never_filled_still_comes():
    channel_layer = layer()
    channel = await channel_layer.new_channel()
    await channel_layer.group_add("room.a", channel)
    try:
        await channel_layer.group_send("room.a", event("a", 1))
        # Offset 2 never comes (lost): 3 and 4 go on after the hold, in order.
        await channel_layer.group_send("room.a", event("a", 4))
        await channel_layer.group_send("room.a", event("a", 3))
        messages = await received(channel_layer, channel, 3)
        assert [m["offset"] for m in messages] == [1, 3, 4]
        # A new epoch (the history was lost) starts afresh.
        await channel_layer.group_send("room.a", event("a", 1, epoch="e2"))
        (message,) = await received(channel_layer, channel, 1)
        assert (message["epoch"], message["offset"]) == ("e2", 1)
    finally:
        await channel_layer.flush()


async def test_events_published_together_count_as_their_offsets_and_hold_nothing_back():
    """A ``room.events`` message (``push.broadcast_many``) covers consecutive
    offsets from its ``offset``: the event after it is the next one, handed
    on at once, not an early one held back (here a hold that would last
    30 s)."""
    handed: list[tuple[str, int]] = []
    order = RoomOrder(lambda channels, message: handed.append((message["type"], message["offset"])), hold=30)
    batch = {"type": "room.events", "room": "a", "epoch": "e1", "offset": 2, "texts": ["t2", "t3", "t4"]}
    order.handle(["c"], event("a", 1))
    order.handle(["c"], batch)
    order.handle(["c"], event("a", 5))
    # A batch first seen in a room, then its successor.
    order.handle(["c"], {**batch, "room": "b", "offset": 10})
    order.handle(["c"], event("b", 13))
    # Held back behind a batch that comes late, then released with it.
    order.handle(["c"], event("a", 9))
    order.handle(["c"], {**batch, "offset": 6})
    assert handed == [
        ("room.event", 1),
        ("room.events", 2),
        ("room.event", 5),
        ("room.events", 10),
        ("room.event", 13),
        ("room.events", 6),
        ("room.event", 9),
    ]
    assert order.held() == 0


async def test_group_send_reaches_every_member_within_capacity():
    channel_layer = layer(capacity=2)
    # Two process-local channels share one Redis key (and its capacity).
    first, second = await channel_layer.new_channel(), await channel_layer.new_channel()
    general = "general.one"
    for channel in (first, second, general):
        await channel_layer.group_add("g", channel)
    try:
        for n in range(3):
            await channel_layer.group_send("g", {"type": "m", "n": n})
        # Each key holds at most its capacity: the third is dropped.
        for channel in (general, first, second):
            assert [m["n"] for m in await received(channel_layer, channel, 2)] == [0, 1]
        await channel_layer.group_discard("g", general)
        await channel_layer.group_send("g", {"type": "m", "n": 3})
        assert [m["n"] for m in await received(channel_layer, first, 1)] == [3]
        assert [m["n"] for m in await received(channel_layer, second, 1)] == [3]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(channel_layer.receive(general), 0.5)
    finally:
        await channel_layer.flush()


async def test_room_events_published_at_once_all_reach_a_process_channel_in_offset_order(monkeypatch):
    # A layer of its own: no pump of an earlier test pops its queue.
    channel_layer = layer()
    monkeypatch.setattr(push, "get_channel_layer", lambda: channel_layer)
    channel = await channel_layer.new_channel()
    room = f"application:order-{uuid.uuid4().hex[:8]}"
    group = group_name(room)
    await channel_layer.group_add(group, channel)
    try:
        # Two hundred publishers at once (realtime.push, as the broadcast
        # endpoint and the domain apps publish): every one is sent (none
        # fails for want of a pooled connection), and, numbered and sent in
        # one step, their events wait in the channel's Redis queue (read
        # directly, before the pump's reordering) in offset order.
        await asyncio.gather(
            *(
                push.broadcast(room, "application_broadcast", {"n": n, "text": "é"}, skip_user="u1" if n % 2 else None)
                for n in range(200)
            )
        )
        key = channel_layer.prefix + channel_layer.non_local_name(channel)
        queued = await channel_layer.connection(0).zrange(key, 0, -1)
        messages = [channel_layer.deserialize(raw) for raw in queued]
        assert [m["offset"] for m in messages] == list(range(1, 201))
        # Each is what the history holds, framed as live events are.
        store = history.store()
        recovery = await store.read(room, history.Position(messages[0]["epoch"], 0))
        for message, entry in zip(messages, recovery.entries, strict=True):
            assert message["type"] == ROOM_EVENT and message["room"] == room
            assert message["text"] == history.framed(entry.base, room, entry.offset, recovery.epoch)
            assert message["epoch"] == recovery.epoch
            assert message.get("skip_user") == entry.skip_user
            assert message["__asgi_channel__"] == [channel]
        assert [m["offset"] for m in await received(channel_layer, channel, 200)] == list(range(1, 201))
    finally:
        await channel_layer.flush()
        await history.store().forget(room)

"""The scaled stack's channel layer on a real Redis (realtime.redis_layer):
room events reach a process channel in offset order per room even when
their group sends came in another order (two publishers), a gap that is
never filled holds nothing back for good, and the group send keeps the
stock layer's capacity rule."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import pytest
from django.conf import settings

from realtime.redis_layer import ResilientRedisChannelLayer

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

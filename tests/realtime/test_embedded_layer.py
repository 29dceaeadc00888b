"""realtime.layers.EmbeddedChannelLayer: a channel whose receiver falls
behind loses what expired, not its groups."""

from __future__ import annotations

import asyncio
import logging

import pytest

from realtime.layers import EmbeddedChannelLayer

CHANNEL = "fanout.inmemory!process"


async def test_a_channel_whose_messages_expired_stays_in_its_groups_and_gets_the_next_ones(caplog):
    layer = EmbeddedChannelLayer(expiry=0.2, capacity=100)
    layer.clean_interval = 0
    await layer.group_add("room", CHANNEL)
    # The receiver is busy (a burst of room events to thousands of sockets):
    # the first message waits past its expiry.
    await layer.group_send("room", {"type": "room.event", "n": 1})
    await asyncio.sleep(0.3)
    with caplog.at_level(logging.WARNING, logger="realtime.layers"):
        await layer.group_send("room", {"type": "room.event", "n": 2})
    assert (await asyncio.wait_for(layer.receive(CHANNEL), 1))["n"] == 2
    assert any("dropped 1 message(s): expired" in record.getMessage() for record in caplog.records)
    await layer.group_send("room", {"type": "room.event", "n": 3})
    assert (await asyncio.wait_for(layer.receive(CHANNEL), 1))["n"] == 3


async def test_a_receiver_waiting_on_an_empty_channel_gets_what_comes_after_a_cleaning():
    layer = EmbeddedChannelLayer(expiry=0.2, capacity=100)
    layer.clean_interval = 0
    await layer.group_add("room", CHANNEL)
    waiting = asyncio.create_task(layer.receive(CHANNEL))
    await asyncio.sleep(0.3)
    await layer.group_send("room", {"type": "room.event", "n": 1})
    assert (await asyncio.wait_for(waiting, 1))["n"] == 1


async def test_memberships_older_than_the_group_expiry_still_end():
    layer = EmbeddedChannelLayer(group_expiry=1)
    layer.clean_interval = 0
    await layer.group_add("room", CHANNEL)
    layer.groups["room"][CHANNEL] -= 5  # joined long ago
    await layer.group_send("room", {"type": "room.event"})
    assert CHANNEL not in layer.groups.get("room", {})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(CHANNEL), 0.2)

"""Announcing who left a room: ``user_joined_room`` and ``user_left_room``
for rooms whose namespace has presence events, and the departures presence
reports (connections of a dead process, leaves made while Redis was down,
what a shutdown found still registered)."""

from __future__ import annotations

import logging
from typing import Any

from channels.layers import get_channel_layer

from realtime import presence, push, rooms
from realtime.errors import ProtocolError
from realtime.protocol import now_ms
from realtime.redis import is_outage

log = logging.getLogger(__name__)


async def on_departures(departures: list[presence.Departure]) -> list[presence.Departure]:
    """Connections of a dead process, or that left while Redis was down:
    drop them from groups, announce leaves; returns the announcements that
    could not be sent (retried)."""
    layer = get_channel_layer()
    # This process's own channels keep their groups: their consumers leave
    # them when they close, and one swept while alive (its heartbeat stalled)
    # must go on receiving.
    local = f".{getattr(layer, 'client_prefix', None)}!"
    unsent = []
    for departure in departures:
        if departure.channel and local not in departure.channel:
            await layer.group_discard(rooms.group_name(departure.room), departure.channel)
        if not await announce_left(departure):
            unsent.append(departure)
    return unsent


async def announce_left(departure: presence.Departure) -> bool:
    """Broadcast user_left_room for a departure that needs it; False if the
    channel layer did not take it."""
    try:
        namespace, _ = rooms.parse_room(departure.room)
    except ProtocolError:
        return True
    if not (departure.last and namespace.presence_events):
        return True
    return await announce(
        departure.room, "user_left_room", {"userId": departure.user_id, "room": departure.room, "leftAt": now_ms()}
    )


async def announce(room: str, event: str, data: dict[str, Any], *, skip_user: str | None = None) -> bool:
    try:
        await push.broadcast(room, event, data, skip_user=skip_user)
    except Exception as exc:
        if not is_outage(exc):
            log.exception("%s not sent to %s", event, room)
        return False
    return True

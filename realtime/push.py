"""Events out to rooms, from any app (sync code wraps these with async_to_sync).

Callers that change the database must call these after commit
(``transaction.on_commit``) so that nothing is announced that may roll back.
"""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer

from realtime.protocol import encode
from realtime.rooms import group_name

ROOM_EVENT = "room.event"


async def broadcast(room: str, event: str, data: dict[str, Any], *, skip_user: str | None = None) -> None:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    # Encoded once here rather than once per receiving connection.
    await layer.group_send(
        group_name(room),
        {"type": ROOM_EVENT, "room": room, "text": encode(event, data), "skip_user": skip_user},
    )


async def send_to_user(user_id: str, event: str, data: dict[str, Any]) -> None:
    await broadcast(f"user:{user_id}", event, data)

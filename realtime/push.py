"""Events out to rooms, from any app (sync code wraps these with async_to_sync).

Callers that change the database must call these after commit
(``transaction.on_commit``) so that nothing is announced that may roll back.
"""

from __future__ import annotations

import time
from typing import Any

from channels.layers import get_channel_layer

from realtime import history, metrics
from realtime.protocol import encode
from realtime.rooms import group_name, namespaces

ROOM_EVENT = "room.event"


async def broadcast(room: str, event: str, data: dict[str, Any], *, skip_user: str | None = None) -> None:
    """Publish to a room: numbered and kept in the room's history
    (realtime.history), then sent to its members through the channel layer:
    one message per server process in the room, handed to its local members
    there (realtime.fanout). On the scaled stack both in one Redis script
    (``group_send_numbered``: every process gets a room's events in offset
    order)."""
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    # Encoded once here rather than once per receiving connection.
    started = time.perf_counter()
    text = encode(event, data)
    message: dict[str, Any] = {"type": ROOM_EVENT, "room": room, "skip_user": skip_user}
    namespace = namespaces.get(room.partition(":")[0])
    store = history.store()
    if namespace is None or namespace.history:
        if isinstance(store, history.RedisHistory) and getattr(layer, "numbers_room_events", bool)():
            # Numbered and sent in one Redis script: every process gets the
            # room's events in offset order (realtime.redis_layer).
            keys, args = store.numbering(room, text, skip_user)
            head = history.framed_head(text, room)
            await layer.group_send_numbered(group_name(room), message, history.NUMBER, keys, args, head)
            metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
            return
        epoch, offset = await store.publish(room, text, skip_user)
        message.update(text=history.framed(text, room, offset, epoch), offset=offset, epoch=epoch)
    else:
        message["text"] = text
    await layer.group_send(group_name(room), message)
    metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)


async def send_to_user(user_id: str, event: str, data: dict[str, Any]) -> None:
    await broadcast(f"user:{user_id}", event, data)

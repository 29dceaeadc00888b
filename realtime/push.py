"""Events out to rooms, from any app (sync code wraps these with async_to_sync).

Callers that change the database must call these after commit
(``transaction.on_commit``) so that nothing is announced that may roll back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from channels.layers import get_channel_layer

from realtime import history, metrics
from realtime.protocol import encode
from realtime.rooms import group_name, namespaces

ROOM_EVENT = "room.event"
# Several events of one room in one channel-layer message (``texts``, in
# order; with history, ``offset`` is the first one's and the rest follow).
ROOM_EVENTS = "room.events"


def _has_history(room: str) -> bool:
    namespace = namespaces.get(room.partition(":")[0])
    return namespace is None or namespace.history


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
    store = history.store()
    if _has_history(room):
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


async def broadcast_many(
    room: str, events: Sequence[tuple[str, dict[str, Any]]], *, skip_user: str | None = None
) -> None:
    """Publish several events to one room, in order, as ``broadcast`` does
    each of them, in one go: numbered together (consecutive offsets, one
    Redis round trip on the scaled stack) and sent in one channel-layer
    message. Members get the same frames as from one ``broadcast`` each."""
    if len(events) <= 1:
        for event, data in events:
            await broadcast(room, event, data, skip_user=skip_user)
        return
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    started = time.perf_counter()
    texts = [encode(event, data) for event, data in events]
    message: dict[str, Any] = {"type": ROOM_EVENTS, "room": room, "skip_user": skip_user}
    if _has_history(room):
        epoch, first = await history.store().publish_many(room, texts, skip_user)
        texts = [history.framed(text, room, first + n, epoch) for n, text in enumerate(texts)]
        message.update(offset=first, epoch=epoch)
    message["texts"] = texts
    await layer.group_send(group_name(room), message)
    metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)


def unpack(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``room.events`` message as the ``room.event`` messages of its
    events, in order."""
    base = {"type": ROOM_EVENT, "room": message["room"], "skip_user": message.get("skip_user")}
    offset = message.get("offset")
    if offset is None:
        return [{**base, "text": text} for text in message["texts"]]
    epoch = message["epoch"]
    return [{**base, "text": text, "offset": offset + n, "epoch": epoch} for n, text in enumerate(message["texts"])]


async def send_to_user(user_id: str, event: str, data: dict[str, Any]) -> None:
    await broadcast(f"user:{user_id}", event, data)


async def send_many_to_user(user_id: str, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
    await broadcast_many(f"user:{user_id}", events)

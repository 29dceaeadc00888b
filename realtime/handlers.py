"""System events (section "System" of the event reference) and the rooms
that belong to no domain: ``user:`` and ``application:``. Their payload
serializers are in ``realtime.payloads``."""

from __future__ import annotations

import contextlib
from typing import Any

from realtime import tenancy
from realtime.context import RequestContext
from realtime.errors import ProtocolError, Unauthorized, ValidationFailed
from realtime.history import Position
from realtime.payloads import (
    ConnectedPayload,
    EmptyPayload,
    PongPayload,
    RoomPayload,
    RoomResyncPayload,
    SubscribedPayload,
    SubscribePayload,
    UnsubscribedPayload,
    UserJoinedPayload,
    UserLeftPayload,
    ValidationErrorPayload,
)
from realtime.payloads import (
    ErrorPayload as ErrorPayload,  # noqa: PLC0414 - re-exported: apps' error payloads subclass it
)
from realtime.protocol import encode, now_ms
from realtime.registry import registry
from realtime.rooms import Namespace, parse_room, register_namespace
from realtime.streams import RESYNC_EVENT, answer

registry.outbound("connected", ConnectedPayload, summary="First event of an authenticated connection.")
registry.outbound("pong", PongPayload, summary="Answer to ping.")
registry.outbound("subscribed", SubscribedPayload, summary="The connection joined the room.")
registry.outbound("unsubscribed", UnsubscribedPayload, summary="The connection left the room.")
registry.outbound(
    "user_joined_room",
    UserJoinedPayload,
    pushed=True,
    summary="A user's first connection joined the room (application: and chat: rooms).",
)
registry.outbound(
    "user_left_room",
    UserLeftPayload,
    pushed=True,
    summary="A user's last connection left the room (unsubscribe, close or dead server process).",
)
registry.outbound(
    RESYNC_EVENT,
    RoomResyncPayload,
    pushed=True,
    summary=(
        "Events of the room were lost and cannot be recovered: refetch the room's state. The envelope carries "
        "recovered: false and the position the stream continues from."
    ),
)
registry.outbound("error", ErrorPayload, category="Errors", summary="Standard error envelope.")
registry.outbound(
    "rate_limit_error", ErrorPayload, category="Errors", summary="A per-connection or per-user throttle was hit."
)
registry.outbound(
    "validation_error", ValidationErrorPayload, category="Errors", summary="A frame or payload failed validation."
)

# --- inbound events ------------------------------------------------------------


@registry.on("ping", EmptyPayload, summary="Liveness check.", replies=("pong",))
async def ping(ctx: RequestContext, data: dict[str, Any]) -> None:
    await ctx.send("pong", {"timestamp": now_ms()})


@registry.on(
    "subscribe",
    SubscribePayload,
    summary="Join a room; with since, also recover the events missed since that position.",
    replies=("subscribed",),
)
async def subscribe(ctx: RequestContext, data: dict[str, Any]) -> None:
    namespace, rest = parse_room(data["room"])
    await namespace.authorize(ctx, rest)
    if namespace.canonical is not None:
        rest = namespace.canonical(rest)
    room = f"{namespace.name}:{rest}"
    since = data.get("since")
    position = Position(since["epoch"], since["offset"]) if since is not None else None
    # Under the streams' lock: a gap being filled in a room already joined
    # must not interleave with this answer and its replay.
    async with ctx.connection.streams.lock:
        count, recovery = await ctx.connection.join_room(room, namespace, position)
        reply = encode("subscribed", {"room": room, "subscriberCount": count}, ctx.request_id)
        await ctx.connection.send(text_data=answer(reply, room, recovery, since is not None))
        if recovery is not None:
            await ctx.connection.streams.replay(room, recovery)
    if namespace.on_join is not None:
        await namespace.on_join(ctx, rest)


@registry.on("unsubscribe", RoomPayload, summary="Leave a room.", replies=("unsubscribed",))
async def unsubscribe(ctx: RequestContext, data: dict[str, Any]) -> None:
    room = data["room"]
    namespace, rest = parse_room(room)
    if namespace.canonical is not None:
        # A name that has no canonical spelling names no joined room either.
        with contextlib.suppress(ProtocolError, ValueError):
            room = f"{namespace.name}:{namespace.canonical(rest)}"
    if namespace.name == "user" and rest == ctx.user_id:
        raise ValidationFailed(
            "the personal room cannot be left", {"room": ["The personal room is joined for the connection's life."]}
        )
    await ctx.connection.leave_room(room)
    await ctx.send("unsubscribed", {"room": room})


# --- rooms ---------------------------------------------------------------------


async def _authorize_user_room(ctx: RequestContext, user_id: str) -> None:
    if user_id != ctx.user_id:
        raise Unauthorized("a user room is open only to its user", room=f"user:{user_id}")


async def _authorize_application_room(ctx: RequestContext, application_id: str) -> None:
    if not await tenancy.is_member_async(ctx.user_pk, application_id):
        raise Unauthorized("not a member of this application", room=f"application:{application_id}")


register_namespace(
    Namespace(
        "user",
        _authorize_user_room,
        presence_events=False,
        description="A user's personal room, joined automatically: credit events and job results.",
    )
)
register_namespace(
    Namespace(
        "application",
        _authorize_application_room,
        presence_events=True,
        description="Members of an application: application broadcasts and presence.",
    )
)

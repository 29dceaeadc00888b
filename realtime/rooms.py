"""Room names, namespaces and their permissions, and the mapping of rooms to
channel-layer groups (which allow only [A-Za-z0-9._-] and < 100 characters).

Apps register their namespace (``market``, ``address``, ``chat``) in their
``handlers.py`` with ``register_namespace``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from realtime.context import RequestContext
from realtime.errors import NotFound, ValidationFailed

MAX_ROOM_LENGTH = 300
_ROOM_RE = re.compile(r"^([a-z][a-z0-9_-]{0,31}):(\S+)$")
_GROUP_SAFE = re.compile(r"[A-Za-z0-9.-]")

Authorize = Callable[[RequestContext, str], Awaitable[None]]


@dataclass(frozen=True)
class Namespace:
    name: str
    # Raises Unauthorized / NotFound / ValidationFailed for a room of this
    # namespace (given the part after the colon) that the caller may not join.
    authorize: Authorize
    # Whether user_joined_room / user_left_room are broadcast in its rooms.
    presence_events: bool
    description: str
    # Sent to the joining connection after ``subscribed`` (e.g. a chart's
    # initial data); gets the request context and the part after the colon.
    on_join: Authorize | None = None
    # The canonical spelling of a room's part after the colon, when several
    # spellings name one room (called after ``authorize`` accepted it).
    canonical: Callable[[str], str] | None = None
    # Whether events published to its rooms are numbered and kept for
    # recovery (realtime.history). Rooms whose frames each process computes
    # itself (live charts) are not: their clients resubscribe instead.
    history: bool = True


namespaces: dict[str, Namespace] = {}


def register_namespace(namespace: Namespace) -> None:
    if namespace.name in namespaces:
        raise RuntimeError(f"room namespace {namespace.name!r} registered twice")
    namespaces[namespace.name] = namespace


def parse_room(room: str) -> tuple[Namespace, str]:
    if len(room) > MAX_ROOM_LENGTH:
        raise ValidationFailed("room name too long", {"room": [f"At most {MAX_ROOM_LENGTH} characters."]})
    match = _ROOM_RE.match(room)
    if not match:
        raise ValidationFailed("room must be namespace:name", {"room": ["Expected 'namespace:name' without spaces."]})
    prefix, rest = match.groups()
    namespace = namespaces.get(prefix)
    if namespace is None:
        raise NotFound(f"unknown room namespace {prefix!r}", room=room)
    return namespace, rest


def group_name(room: str) -> str:
    """An injective mapping of a room name to a valid group name."""
    escaped = "".join(ch if _GROUP_SAFE.match(ch) else ("_" + format(ord(ch), "x") + "_") for ch in room)
    name = "room." + escaped
    if len(name) < 100:
        return name
    return "room.h." + hashlib.sha256(room.encode("utf-8")).hexdigest()

"""How the pieces of one Engine.IO session reach each other.

A session lives in one server process and is addressed by a channel-layer
channel; its ``sid`` is that channel's name, signed. The transports that
serve it (an HTTP long-polling request, a WebSocket) may arrive at any
process: they send to the session's channel, and the session answers to
theirs, so no load balancer needs sticky sessions. Between two ends in the
same process a message is handed over directly, without the layer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from django.conf import settings

Deliver = Callable[[dict[str, Any]], Any]

_local: dict[str, Deliver] = {}
# The direct writers (realtime.transport) of this process's WebSocket transports.
_writers: dict[str, Any] = {}
# The part before "!" of the channels this process receives on (one per
# channel layer): a sid naming one of them whose session is gone is
# refused at once instead of waiting for an answer.
_own_prefixes: set[str] = set()


def register(channel: str, deliver: Deliver) -> None:
    _local[channel] = deliver
    _own_prefixes.add(channel.partition("!")[0])


def unregister(channel: str) -> None:
    _local.pop(channel, None)
    _writers.pop(channel, None)


def register_writer(channel: str, writer: Any) -> None:
    if writer is not None:
        _writers[channel] = writer


def writer(channel: str) -> Any:
    return _writers.get(channel)


def is_local(channel: str) -> bool:
    return channel in _local


def owned_elsewhere(channel: str) -> bool:
    """Whether ``channel`` may belong to another process."""
    return channel.partition("!")[0] not in _own_prefixes


async def send(layer: Any, channel: str, message: dict[str, Any]) -> None:
    deliver = _local.get(channel)
    if deliver is not None:
        result = deliver(message)
        if result is not None:
            await result
        return
    await layer.send(channel, message)


def _mac(channel: str) -> str:
    key = settings.SECRET_KEY.encode("utf-8")
    return hmac.new(key, b"socketio-sid:" + channel.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def sign(channel: str) -> str:
    return f"{channel}~{_mac(channel)}"


def channel_of(sid: str) -> str | None:
    """The session channel a sid names, or None when it was not issued here."""
    channel, _, mac = sid.rpartition("~")
    if not channel or not hmac.compare_digest(mac, _mac(channel)):
        return None
    return channel

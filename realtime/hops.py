"""Consumers without channels' hops to the ORM thread on every message.

channels closes stale database connections before every message a consumer
handles and after every WebSocket disconnect, each time with a hop to the
process's one ORM thread: per frame received, per room broadcast delivered
(it dominated a broadcast's cost), per connection closed. Every database
call these consumers make goes through ``database_sync_to_async``, which
closes stale connections in the thread that owns them, so the hops are
skipped.
"""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer


class WithoutConnectionHops:
    """Mixed in before channels' consumer class."""

    channel_layer: Any
    channel_name: str
    groups: list[str]

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.disconnect(message["code"])
        raise StopConsumer

    async def disconnect(self, code: int) -> None:
        """Overridden by the consumer."""

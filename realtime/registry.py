"""The one event registry: name -> payload serializer, handler, throttle, price.

Each app declares its events in its own ``handlers.py``:

    @registry.on("subscribe", RoomPayload, replies=("subscribed",))
    async def subscribe(ctx, data): ...

    registry.outbound("subscribed", SubscribedPayload, summary="...")

The consumer dispatches only through this table, and the AsyncAPI document is
generated from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.context import RequestContext

Handler = Callable[["RequestContext", dict[str, Any]], Awaitable[None]]
ConnectHook = Callable[["RequestContext"], Awaitable[None]]


@dataclass(frozen=True)
class InboundEvent:
    name: str
    serializer: type
    handler: Handler
    summary: str
    replies: tuple[str, ...] = ()
    # Per-user throttle class (settings LEDGERCORE_THROTTLE_RATES); every
    # frame is also charged to the connection's own bucket.
    throttle: str = "user"
    # Key of the action's price, charged through the credits path; None is free.
    price: str | None = None
    # Event that carries this request's errors (query_error, chat_error, ...).
    error_event: str = "error"
    # Long work runs as its own task so the connection keeps answering; short
    # events run in arrival order.
    concurrent: bool = False
    category: str = "System"


@dataclass(frozen=True)
class OutboundEvent:
    name: str
    serializer: type
    summary: str
    category: str = "System"
    pushed: bool = False  # sent to rooms, not in reply to a request


@dataclass
class EventRegistry:
    inbound_events: dict[str, InboundEvent] = field(default_factory=dict)
    outbound_events: dict[str, OutboundEvent] = field(default_factory=dict)
    # Called once per connection after ``connected`` (e.g. the credit balance).
    connect_hooks: list[ConnectHook] = field(default_factory=list)

    def on_connect(self, hook: ConnectHook) -> ConnectHook:
        self.connect_hooks.append(hook)
        return hook

    def on(
        self,
        name: str,
        serializer: type,
        *,
        summary: str,
        replies: tuple[str, ...] = (),
        throttle: str = "user",
        price: str | None = None,
        error_event: str = "error",
        concurrent: bool = False,
        category: str = "System",
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            if name in self.inbound_events:
                raise RuntimeError(f"event {name!r} registered twice")
            self.inbound_events[name] = InboundEvent(
                name=name,
                serializer=serializer,
                handler=handler,
                summary=summary,
                replies=replies,
                throttle=throttle,
                price=price,
                error_event=error_event,
                concurrent=concurrent,
                category=category,
            )
            return handler

        return register

    def outbound(
        self,
        name: str,
        serializer: type,
        *,
        summary: str,
        category: str = "System",
        pushed: bool = False,
    ) -> None:
        if name in self.outbound_events:
            raise RuntimeError(f"outbound event {name!r} registered twice")
        self.outbound_events[name] = OutboundEvent(name, serializer, summary, category, pushed)

    def get(self, name: str) -> InboundEvent | None:
        return self.inbound_events.get(name)


registry = EventRegistry()

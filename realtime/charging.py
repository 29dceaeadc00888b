"""The one charging path of the registry: reserve -> execute -> settle.

The consumer knows only this interface; the credits app installs the real
charger (a hold on the caller's account, captured on success and released
when the work fails on the server side).
"""

from __future__ import annotations

from typing import Any, Protocol

from realtime.context import RequestContext
from realtime.errors import ProtocolError


class InsufficientCredits(ProtocolError):
    code = "INSUFFICIENT_CREDITS"

    def __init__(self, required: int, available: int, action: str) -> None:
        super().__init__(f"{action} needs {required} credits; {available} available")
        self.required, self.available, self.action = required, available, action


class Charger(Protocol):
    async def reserve(self, ctx: RequestContext, price_key: str) -> Any:
        """A token for settle(), or None if the action is free; raises
        InsufficientCredits when the balance cannot cover the price."""

    async def settle(self, token: Any, failed_on_server: bool, cost: int | None = None) -> None:
        """Capture ``cost`` (at most what was held; None: all of it), or
        release everything when the server failed."""


class Free:
    async def reserve(self, ctx: RequestContext, price_key: str) -> Any:
        return None

    async def settle(self, token: Any, failed_on_server: bool, cost: int | None = None) -> None:
        return None


charger: Charger = Free()


def install(new: Charger) -> None:
    global charger
    charger = new

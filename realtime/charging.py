"""The one charging path of the registry: reserve -> execute -> settle.

The consumer knows only this interface; the credits app installs the real
charger (a hold on the caller's account, captured on success and released
when the request was refused or failed on the server side).

A request is charged exactly once: a handler that records its completion
in the database captures the charge in that same transaction
(``Charge.capture_in_transaction``), so that a completed request stays
charged whatever happens to the process next; for the others the consumer
settles after the handler returns, retrying until the database takes it.
A hold nobody settles (its process died) is released by the other
processes (``realtime.processes``).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from django.db import transaction

from realtime.context import RequestContext
from realtime.errors import ProtocolError

log = logging.getLogger(__name__)


class InsufficientCredits(ProtocolError):
    code = "INSUFFICIENT_CREDITS"

    def __init__(self, required: int, available: int, action: str) -> None:
        super().__init__(f"{action} needs {required} credits; {available} available")
        self.required, self.available, self.action = required, available, action


class SettledElsewhere(Exception):
    """The hold was already settled another way (by the request's job, by
    the release of a dead process's holds, or at its expiry)."""


class Charger(Protocol):
    async def reserve(self, ctx: RequestContext, price_key: str) -> Any:
        """A token for settle(), or None if the action is free; raises
        InsufficientCredits when the balance cannot cover the price."""

    async def settle(self, token: Any, failed_on_server: bool, cost: int | None = None) -> None:
        """Capture ``cost`` (at most what was held; None: all of it), or
        release everything when ``failed_on_server`` (the request failed or
        was refused). Raises SettledElsewhere."""

    def capture_now(self, token: Any, cost: int | None = None) -> None:
        """Capture synchronously, inside the caller's database transaction.
        Raises SettledElsewhere."""


class Free:
    async def reserve(self, ctx: RequestContext, price_key: str) -> Any:
        return None

    async def settle(self, token: Any, failed_on_server: bool, cost: int | None = None) -> None:
        return None

    def capture_now(self, token: Any, cost: int | None = None) -> None:
        return None


class Charge:
    """The charge of one running request (a hold taken before it ran)."""

    def __init__(self, charger: Charger, token: Any) -> None:
        self.charger = charger
        self.token = token
        self.settled = False

    def capture_in_transaction(self, cost: int | None = None) -> None:
        """Capture inside the caller's open transaction (synchronous; call it
        from the worker thread that records the request's completion). If
        that transaction rolls back, the charge stays open and the consumer
        settles it as usual."""
        try:
            with transaction.atomic():
                self.charger.capture_now(self.token, cost)
        except SettledElsewhere:
            log.warning("the charge %r was already settled; the completed request is not charged", self.token)
        transaction.on_commit(self._mark_settled)

    def _mark_settled(self) -> None:
        self.settled = True


charger: Charger = Free()


def install(new: Charger) -> None:
    global charger
    charger = new

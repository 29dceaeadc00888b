"""What a handler knows about the request it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from realtime.protocol import RequestId

if TYPE_CHECKING:
    from realtime.charging import Charge
    from realtime.consumers import RealtimeConsumer


@dataclass
class Meter:
    """What a metered request really cost (e.g. by tokens), set by its
    handler; None charges the whole price held for it."""

    cost: int | None = None
    # Set by a handler that hands its work, and with it the charge (found by
    # the hold's reference), to a durable job: if the connection closes
    # before the work ends, the hold is left for the job to capture or
    # release instead of being released with the request.
    handed_over: bool = False


@dataclass(frozen=True)
class RequestContext:
    connection: RealtimeConsumer
    event: str
    request_id: RequestId | None
    # The payload's ``applicationId`` when it names another application the
    # user belongs to: the request runs and is charged there.
    application: str | None = None
    meter: Meter = field(default_factory=Meter)
    # The request's charge, when it has a price: a handler that records its
    # completion captures it in that transaction (Charge.capture_in_transaction).
    charge: Charge | None = None

    @property
    def user_id(self) -> str:
        return self.connection.user_id

    @property
    def user_pk(self) -> int:
        return self.connection.user_pk

    @property
    def application_id(self) -> str:
        return self.application or self.connection.application_id

    @property
    def sid(self) -> str:
        return self.connection.sid

    async def send(self, event: str, data: dict[str, Any]) -> None:
        """Send an event caused by this request (it carries the request id)."""
        await self.connection.send_event(event, data, self.request_id)

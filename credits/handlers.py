"""Credit events (section "Credits" of the event reference; their payloads
in credits.payloads), the balance sent on connect, and the charger of the
registry's charging path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from credits import balances, services
from credits.balances import Balance
from credits.payloads import BalancePayload, DeductedPayload, GrantedPayload, InsufficientPayload, balance_payload
from realtime import charging, processes
from realtime.batching import Batched
from realtime.context import RequestContext
from realtime.registry import registry

registry.outbound(
    "credit_balance_updated",
    BalancePayload,
    category="Credits",
    pushed=True,
    summary="The balance after a movement; also sent once right after connected.",
)
registry.outbound("credits_deducted", DeductedPayload, category="Credits", pushed=True, summary="Credits were spent.")
registry.outbound("credits_granted", GrantedPayload, category="Credits", pushed=True, summary="Credits were added.")
registry.outbound(
    "insufficient_credits",
    InsufficientPayload,
    category="Credits",
    summary="A chargeable request the balance cannot cover; it was not executed.",
)


# The opening balances of connections in one hop to the ORM thread.
_get_balance: Batched[tuple[int, str], Balance] = Batched(balances.get_balances)


@registry.on_connect
async def send_balance(ctx: RequestContext) -> None:
    balance = await _get_balance((ctx.user_pk, ctx.application_id))
    await ctx.connection.send_event(
        "credit_balance_updated",
        balance_payload(
            application_id=balance.application_id,
            balance=balance.balance,
            lifetime_earned=balance.lifetime_earned,
            lifetime_spent=balance.lifetime_spent,
            sequence=balance.sequence,
        ),
    )


@dataclass(frozen=True)
class _Reservation:
    hold_id: int
    amount: int


def _reserve(user_pk: int, user_id: str, application_id: str, action: str, reference: str) -> _Reservation | None:
    price = services.price_of(application_id, action)
    if price <= 0:
        return None
    try:
        hold = services.hold_credits(
            user_pk,
            application_id,
            price,
            action=action,
            actor=services.Actor.user(user_id),
            reference=reference,
            owner=processes.PROCESS_ID,
        )
    except services.InsufficientCredits as exc:
        raise charging.InsufficientCredits(exc.required, exc.available, action) from None
    return _Reservation(hold.pk, price)


def _settle(reservation: _Reservation, failed_on_server: bool, cost: int | None) -> None:
    try:
        if failed_on_server:
            services.release_hold(
                reservation.hold_id, actor=services.Actor.system(), reason="not run or failed: refunded"
            )
        else:
            charged = reservation.amount if cost is None else max(0, min(cost, reservation.amount))
            services.capture_hold(reservation.hold_id, charged, actor=services.Actor.system())
    except services.InvalidMovement as exc:
        raise charging.SettledElsewhere(str(exc)) from None


class LedgerCharger:
    """Hold the action's price before executing (owned by this process);
    capture it (or the smaller metered cost the handler reported) on
    success, release it when the request was refused or the server failed."""

    async def reserve(self, ctx: RequestContext, price_key: str) -> Any:
        reference = f"{ctx.sid}:{ctx.request_id}" if ctx.request_id is not None else ctx.sid
        return await database_sync_to_async(_reserve)(
            ctx.user_pk, ctx.user_id, ctx.application_id, price_key, reference
        )

    async def settle(self, token: Any, failed_on_server: bool, cost: int | None = None) -> None:
        await database_sync_to_async(_settle)(token, failed_on_server, cost)

    def capture_now(self, token: Any, cost: int | None = None) -> None:
        _settle(token, False, cost)


processes.on_dead("credit holds")(services.release_holds_of_dead_processes)

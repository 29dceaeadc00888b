"""Credit movements: one short atomic function per movement, and the reads
and sweeps around them (balance, price, expiry, release of stale holds).

Each movement locks the account row (SELECT ... FOR UPDATE on PostgreSQL; an
IMMEDIATE transaction serialises writers on SQLite), replays an idempotency
key it has seen (returning the original entry, writing nothing), appends one
entry with the balance after it and a hash chained to the previous entry
(credits.ledger), and updates the account. The database refuses a negative
balance and duplicate sequences or keys even if this code were wrong.
Movements on one account that arrive at the same moment share one
transaction and one commit (credits.combining), each still checked and
written on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from credits import expiry
from credits.balances import Balance, get_balance
from credits.combining import GroupCommit, Movement, Session
from credits.ledger import (
    Actor,
    CreditError,
    InsufficientCredits,
    InvalidMovement,
    append,
    give_back,
    locked_account,
    require_positive,
)
from credits.models import CreditBlock, EntryKind, Hold, LedgerEntry, Price
from realtime.processes import DeadOwners

__all__ = [
    "Actor",
    "Balance",
    "CreditError",
    "InsufficientCredits",
    "InvalidMovement",
    "adjust_credits",
    "capture_hold",
    "deduct_credits",
    "expire_block",
    "expire_credits",
    "get_balance",
    "grant_credits",
    "group_commit_stats",
    "hold_credits",
    "movements_in_flight",
    "price_of",
    "refund_credits",
    "release_expired_holds",
    "release_hold",
    "release_holds_of_dead_processes",
]


_group = GroupCommit(locked_account, (CreditError,))


def _move[T](user_pk: int, application_id: str, movement: Movement[T], idempotency_key: str | None = None) -> T:
    return _group.run((user_pk, application_id), movement, idempotency_key)


def group_commit_stats() -> tuple[int, int]:
    """(batches, movements) committed through group commit in this process."""
    return _group.batches, _group.movements


def movements_in_flight(user_pk: int, application_id: str) -> int:
    return _group.in_flight((user_pk, application_id))


def grant_credits(
    user_pk: int,
    application_id: str,
    amount: int,
    *,
    reason: str,
    actor: Actor,
    action: str = "grant",
    reference: str = "",
    idempotency_key: str | None = None,
    expires_at: datetime | None = None,
) -> LedgerEntry:
    """Add credits; with ``expires_at`` what is not spent by then expires."""
    require_positive(amount)
    if not reason.strip():
        raise InvalidMovement("a grant needs a reason")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidMovement("an expiry date must be in the future")

    def movement(session: Session) -> LedgerEntry:
        replay = session.replayed(idempotency_key)
        if replay is not None:
            return replay
        entry = append(
            session,
            EntryKind.GRANT,
            amount,
            earned=amount,
            action=action,
            actor=actor,
            reason=reason,
            reference=reference,
            idempotency_key=idempotency_key,
        )
        if expires_at is not None:
            CreditBlock.objects.create(
                account=session.account, grant=entry, amount=amount, remaining=amount, expires_at=expires_at
            )
            session.account.expiring += amount
        return entry

    return _move(user_pk, application_id, movement, idempotency_key)


def deduct_credits(
    user_pk: int,
    application_id: str,
    amount: int,
    *,
    action: str,
    actor: Actor,
    reason: str = "",
    reference: str = "",
    idempotency_key: str | None = None,
) -> LedgerEntry:
    require_positive(amount)

    def movement(session: Session) -> LedgerEntry:
        return session.replayed(idempotency_key) or append(
            session,
            EntryKind.DEDUCTION,
            -amount,
            spent=amount,
            action=action,
            actor=actor,
            reason=reason,
            reference=reference,
            idempotency_key=idempotency_key,
            deferrable=True,
        )

    return _move(user_pk, application_id, movement, idempotency_key)


def refund_credits(entry_id: int, *, reason: str, actor: Actor, idempotency_key: str | None = None) -> LedgerEntry:
    """Reverse a deduction (whole): a new entry that references it."""
    original = LedgerEntry.objects.select_related("account").get(pk=entry_id)
    if original.kind != EntryKind.DEDUCTION:
        raise InvalidMovement("only deductions can be refunded")
    key = idempotency_key or f"refund:{original.pk}"

    def movement(session: Session) -> LedgerEntry:
        replay = session.replayed(key)
        if replay is not None:
            return replay
        if LedgerEntry.objects.filter(reverses=original).exists():
            raise InvalidMovement("entry already reversed")
        refund = append(
            session,
            EntryKind.REFUND,
            original.spent,
            spent=-original.spent,
            action=original.action,
            actor=actor,
            reason=reason or "refund",
            reference=original.reference,
            idempotency_key=key,
            reverses=original,
        )
        give_back(session, refund, original, original.spent, original.spent)
        return refund

    return _move(original.account.user_id, original.account.application_id, movement, key)


def adjust_credits(
    user_pk: int,
    application_id: str,
    amount: int,
    *,
    reason: str,
    actor: Actor,
    reverses: int | None = None,
    idempotency_key: str | None = None,
) -> LedgerEntry:
    """A signed manual correction by staff, with a mandatory reason."""
    if not isinstance(amount, int) or amount == 0:
        raise InvalidMovement("an adjustment is a non-zero integer")
    if not reason.strip():
        raise InvalidMovement("an adjustment needs a reason")

    def movement(session: Session) -> LedgerEntry:
        original = LedgerEntry.objects.get(pk=reverses, account=session.account) if reverses else None
        return session.replayed(idempotency_key) or append(
            session,
            EntryKind.ADJUSTMENT,
            amount,
            earned=max(amount, 0),
            spent=0,
            action="adjustment",
            actor=actor,
            reason=reason,
            idempotency_key=idempotency_key,
            reverses=original,
        )

    return _move(user_pk, application_id, movement, idempotency_key)


def hold_credits(
    user_pk: int,
    application_id: str,
    amount: int,
    *,
    action: str,
    actor: Actor,
    reference: str = "",
    ttl_seconds: int | None = None,
    idempotency_key: str | None = None,
    owner: str = "",
) -> Hold:
    """Reserve credits for long work: the balance drops now; capture or
    release settles it. ``owner``: the server process that will settle it
    (released when that process dies, ``release_holds_of_dead_processes``)."""
    require_positive(amount)
    ttl = ttl_seconds if ttl_seconds is not None else settings.LEDGERCORE_HOLD_TTL_SECONDS

    def movement(session: Session) -> Hold:
        replay = session.replayed(idempotency_key)
        if replay is not None and replay.hold is not None:
            return replay.hold
        account = session.account
        if account.balance < amount:
            raise InsufficientCredits(amount, account.balance, action)
        hold = Hold.objects.create(
            account=account,
            amount=amount,
            action=action[:100],
            reference=reference[:200],
            owner=owner[:80],
            expires_at=timezone.now() + timedelta(seconds=ttl),
        )
        append(
            session,
            EntryKind.HOLD,
            -amount,
            action=action,
            actor=actor,
            reference=reference,
            idempotency_key=idempotency_key,
            hold=hold,
        )
        return hold

    return _move(user_pk, application_id, movement, idempotency_key)


def _settle_hold(hold_id: int, settle: Callable[[Session, Hold], LedgerEntry], key: str) -> LedgerEntry:
    account = Hold.objects.select_related("account").get(pk=hold_id).account

    def movement(session: Session) -> LedgerEntry:
        hold = Hold.objects.select_for_update().get(pk=hold_id)
        return settle(session, hold)

    return _move(account.user_id, account.application_id, movement, key)


def capture_hold(hold_id: int, cost: int, *, actor: Actor) -> LedgerEntry:
    """Settle a hold at its real cost (0..amount); the rest goes back."""

    def settle(session: Session, hold: Hold) -> LedgerEntry:
        if hold.status == Hold.Status.CAPTURED and hold.captured == cost:
            return hold.entries.get(kind=EntryKind.CAPTURE)
        if hold.status != Hold.Status.PENDING:
            raise InvalidMovement(f"hold is {hold.status}")
        if not 0 <= cost <= hold.amount:
            raise InvalidMovement("capture must be between 0 and the held amount")
        hold.status = Hold.Status.CAPTURED
        hold.captured = cost
        hold.closed_at = timezone.now()
        hold.save(update_fields=["status", "captured", "closed_at"])
        capture = append(
            session,
            EntryKind.CAPTURE,
            hold.amount - cost,
            spent=cost,
            action=hold.action,
            actor=actor,
            reference=hold.reference,
            idempotency_key=f"capture:{hold.pk}",
            hold=hold,
        )
        give_back(session, capture, hold.entries.get(kind=EntryKind.HOLD), hold.amount, hold.amount - cost)
        return capture

    return _settle_hold(hold_id, settle, f"capture:{hold_id}")


def release_hold(hold_id: int, *, actor: Actor, reason: str = "", expired: bool = False) -> LedgerEntry:
    """Give a hold back in full (failed work, or past its expiry)."""

    def settle(session: Session, hold: Hold) -> LedgerEntry:
        if hold.status in (Hold.Status.RELEASED, Hold.Status.EXPIRED):
            return hold.entries.get(kind=EntryKind.RELEASE)
        if hold.status != Hold.Status.PENDING:
            raise InvalidMovement(f"hold is {hold.status}")
        hold.status = Hold.Status.EXPIRED if expired else Hold.Status.RELEASED
        hold.closed_at = timezone.now()
        hold.save(update_fields=["status", "closed_at"])
        release = append(
            session,
            EntryKind.RELEASE,
            hold.amount,
            action=hold.action,
            actor=actor,
            reason=reason or ("hold expired" if expired else "released"),
            reference=hold.reference,
            idempotency_key=f"release:{hold.pk}",
            hold=hold,
        )
        give_back(session, release, hold.entries.get(kind=EntryKind.HOLD), hold.amount, hold.amount)
        return release

    return _settle_hold(hold_id, settle, f"release:{hold_id}")


def expire_block(block_id: int, now: datetime | None = None) -> LedgerEntry | None:
    """Close a block past its expiry date: what is left of it leaves the
    balance through an expiry entry that references the grant."""
    block = CreditBlock.objects.select_related("account", "grant").get(pk=block_id)
    moment = now or timezone.now()
    if block.expires_at > moment:
        raise InvalidMovement("the block has not reached its expiry date")

    def movement(session: Session) -> LedgerEntry | None:
        current = CreditBlock.objects.get(pk=block_id)
        if current.expired_at is not None:
            return current.expiry
        entry = None
        if current.remaining > 0:
            entry = append(
                session,
                EntryKind.EXPIRY,
                -current.remaining,
                action="expiry",
                actor=Actor.system(),
                reason=f"grant #{block.grant.sequence} expired {block.expires_at:%Y-%m-%d %H:%M} UTC",
                reference=block.grant.reference,
                idempotency_key=f"expiry:{block_id}",
                reverses=block.grant,
            )
            expiry.expire(session.account, entry, [(current, current.remaining)])
        current.expired_at = moment
        current.expiry = entry
        current.save(update_fields=["expired_at", "expiry"])
        return entry

    return _move(block.account.user_id, block.account.application_id, movement, f"expiry:{block_id}")


def expire_credits(now: datetime | None = None) -> int:
    """Expire every block past its expiry date; returns how many."""
    moment = now or timezone.now()
    blocks = CreditBlock.objects.filter(expired_at__isnull=True, expires_at__lte=moment).order_by("expires_at", "pk")
    count = 0
    for block_id in blocks.values_list("pk", flat=True):
        expire_block(block_id, moment)
        count += 1
    return count


def release_expired_holds(now: object | None = None) -> int:
    """Release every pending hold past its expiry; returns how many."""
    cutoff = now or timezone.now()
    released = 0
    for hold_id in Hold.objects.filter(status=Hold.Status.PENDING, expires_at__lt=cutoff).values_list("pk", flat=True):
        try:
            release_hold(hold_id, actor=Actor.system(), expired=True)
            released += 1
        except InvalidMovement:
            continue  # settled meanwhile
    return released


def release_holds_of_dead_processes(owners: DeadOwners) -> int:
    """Release every pending hold whose owning process is dead
    (``realtime.processes``); returns how many."""
    orphans = Hold.objects.filter(owners.filter(), status=Hold.Status.PENDING).values_list("pk", "owner")
    released = 0
    for hold_id, owner in list(orphans):
        try:
            release_hold(hold_id, actor=Actor.system(), reason=f"its server process {owner} stopped: refunded")
            released += 1
        except InvalidMovement:
            continue  # settled meanwhile
    return released


def price_of(application_id: str, action: str) -> int:
    override = (
        Price.objects.filter(application_id=application_id, action=action).values_list("amount", flat=True).first()
    )
    if override is not None:
        return int(override)
    return int(settings.LEDGERCORE_PRICES.get(action, 0))

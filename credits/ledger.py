"""Writing one ledger entry: the building block of every movement
(credits.services).

``append`` checks the balance, writes the entry with the balance after it,
the account's next sequence number and a hash chained to the previous entry,
writes the entry's outbox record (credits.events) in the same transaction,
and takes spent credits from expiring blocks (credits.expiry). It runs under
the account's row lock (``locked_account``), inside the movement's
transaction (credits.combining).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from credits import expiry
from credits.combining import Session
from credits.models import ActorType, CreditAccount, EntryKind, Hold, LedgerEntry

GENESIS_HASH = "0" * 64


class CreditError(Exception):
    pass


class InsufficientCredits(CreditError):
    def __init__(self, required: int, available: int, action: str) -> None:
        super().__init__(f"{action} needs {required} credits; {available} available")
        self.required = required
        self.available = available
        self.action = action


class InvalidMovement(CreditError):
    pass


@dataclass(frozen=True)
class Actor:
    type: str
    id: str = ""

    @classmethod
    def system(cls) -> Actor:
        return cls(ActorType.SYSTEM, "")

    @classmethod
    def staff(cls, username: str) -> Actor:
        return cls(ActorType.STAFF, username)

    @classmethod
    def user(cls, user_id: str) -> Actor:
        return cls(ActorType.USER, user_id)


def entry_hash(entry: LedgerEntry) -> str:
    """SHA-256 over the entry's content and the previous entry's hash."""
    content = {
        "account": entry.account_id,
        "sequence": entry.sequence,
        "kind": entry.kind,
        "amount": entry.amount,
        "spent": entry.spent,
        "balance_after": entry.balance_after,
        "lifetime_earned_after": entry.lifetime_earned_after,
        "lifetime_spent_after": entry.lifetime_spent_after,
        "action": entry.action,
        "reason": entry.reason,
        "actor": [entry.actor_type, entry.actor_id],
        "reference": entry.reference,
        "idempotency_key": entry.idempotency_key,
        "reverses": entry.reverses_id,
        "hold": entry.hold_id,
        "created_at": entry.created_at.isoformat(),
        "prev_hash": entry.prev_hash,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def locked_account(user_pk: int, application_id: str) -> CreditAccount:
    """The account row, locked until the transaction ends (created if new)."""
    account = CreditAccount.objects.select_for_update().filter(user_id=user_pk, application_id=application_id).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            CreditAccount.objects.create(user_id=user_pk, application_id=application_id)
    except IntegrityError:
        pass  # created concurrently
    return CreditAccount.objects.select_for_update().get(user_id=user_pk, application_id=application_id)


def require_positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidMovement("amount must be a positive integer")


def append(
    session: Session,
    kind: str,
    amount: int,
    *,
    action: str,
    actor: Actor,
    spent: int = 0,
    earned: int = 0,
    reason: str = "",
    reference: str = "",
    idempotency_key: str | None = None,
    reverses: LedgerEntry | None = None,
    hold: Hold | None = None,
    deferrable: bool = False,
) -> LedgerEntry:
    """Write one entry and its outbox record; the account row is saved once
    when the movement (or its batch) ends. Raises before writing anything if
    the balance would go below zero.

    ``deferrable``: the caller needs nothing of the entry before the movement
    ends (not its id), so when the entry takes nothing from expiring blocks
    it is inserted with the others of its batch (``Session.defer``); it has
    its id when the movement's caller gets it."""
    account = session.account
    balance_after = account.balance + amount
    if balance_after < 0:
        raise InsufficientCredits(-amount, account.balance, action)
    account.balance = balance_after
    account.lifetime_earned += earned
    account.lifetime_spent += spent
    account.last_sequence += 1
    entry = LedgerEntry(
        account=account,
        sequence=account.last_sequence,
        kind=kind,
        amount=amount,
        spent=max(spent, 0),
        balance_after=balance_after,
        lifetime_earned_after=account.lifetime_earned,
        lifetime_spent_after=account.lifetime_spent,
        action=action[:100],
        reason=reason[:500],
        actor_type=actor.type,
        actor_id=actor.id[:150],
        reference=reference[:200],
        idempotency_key=(idempotency_key or f"auto:{uuid.uuid4().hex}")[:200],
        reverses=reverses,
        hold=hold,
        created_at=timezone.now(),
        prev_hash=account.last_hash or GENESIS_HASH,
    )
    entry.hash = entry_hash(entry)
    account.last_hash = entry.hash
    takes_blocks = amount < 0 and kind != EntryKind.EXPIRY and account.expiring > 0
    if deferrable and not takes_blocks and reverses is None and hold is None:
        # Inserted in bulk; ``entries_inserted`` writes the outbox rows.
        session.defer(entry)
    else:
        session.write_pending()
        # Its post_save signal writes the outbox row (credits.signals).
        entry.save(force_insert=True)
    session.remember(entry)
    if takes_blocks:
        expiry.take(account, entry, -amount)
    return entry


def give_back(session: Session, entry: LedgerEntry, source: LedgerEntry, source_total: int, amount: int) -> None:
    """Return credits to the blocks ``source`` took them from; those of
    blocks that expired meanwhile expire now."""
    expired = expiry.give_back(session.account, entry, source, source_total, amount)
    if not expired:
        return
    lapsed = append(
        session,
        EntryKind.EXPIRY,
        -sum(part for _, part in expired),
        action="expiry",
        actor=Actor.system(),
        reason="returned credits of an expired grant",
        reference=entry.reference,
        idempotency_key=f"expiry-return:{entry.pk}",
        reverses=entry,
    )
    expiry.expire(session.account, lapsed, expired)

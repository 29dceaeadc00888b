"""Ledger reconciliation: check every account against its entries.

For each account: the entries' amounts sum to the balance, sequences run
1..last_sequence without gaps, the lifetime counters equal the last entry's,
the hash chain is intact and ends at the account's ``last_hash``, and every
expiring-credit block's ``remaining`` equals its grant minus its draws, the
open blocks summing to the account's ``expiring``; and every hold is
settled at most once, as its status says: one hold entry, then one capture
(captured) or one release (released, expired), or neither (pending).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import Coalesce

from credits import ledger
from credits.models import CreditAccount, CreditBlock, EntryKind, Hold, LedgerEntry


@dataclass
class AccountReport:
    account_id: int
    user_id: str
    application_id: str
    balance: int
    entries_sum: int
    last_sequence: int
    ok: bool = True
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_PROBLEMS_PER_KIND = 5


def reconcile_account(account: CreditAccount) -> AccountReport:
    problems: list[str] = []
    total = 0
    expected_sequence = 1
    prev_hash = ledger.GENESIS_HASH
    last: LedgerEntry | None = None
    sequence_problems = hash_problems = 0
    for entry in LedgerEntry.objects.filter(account_id=account.pk).order_by("sequence").iterator(chunk_size=2000):
        total += entry.amount
        if entry.sequence != expected_sequence:
            sequence_problems += 1
            if sequence_problems <= MAX_PROBLEMS_PER_KIND:
                problems.append(f"sequence {entry.sequence} found where {expected_sequence} was expected")
        if entry.prev_hash != prev_hash:
            hash_problems += 1
            if hash_problems <= MAX_PROBLEMS_PER_KIND:
                problems.append(f"entry {entry.sequence}: prev_hash does not match the previous entry's hash")
        if entry.hash != ledger.entry_hash(entry):
            hash_problems += 1
            if hash_problems <= MAX_PROBLEMS_PER_KIND:
                problems.append(f"entry {entry.sequence}: hash does not match its content")
        expected_sequence = entry.sequence + 1
        prev_hash = entry.hash
        last = entry

    if total != account.balance:
        problems.append(f"balance {account.balance} != sum of entries {total}")
    last_seq = last.sequence if last is not None else 0
    if last_seq != account.last_sequence:
        problems.append(f"account last_sequence {account.last_sequence} != last entry sequence {last_seq}")
    earned = last.lifetime_earned_after if last is not None else 0
    spent = last.lifetime_spent_after if last is not None else 0
    if account.lifetime_earned != earned:
        problems.append(f"lifetime_earned {account.lifetime_earned} != last entry's {earned}")
    if account.lifetime_spent != spent:
        problems.append(f"lifetime_spent {account.lifetime_spent} != last entry's {spent}")
    if last is not None and last.balance_after != account.balance:
        problems.append(f"balance {account.balance} != last entry's balance_after {last.balance_after}")
    problems.extend(_block_problems(account))
    problems.extend(_hold_problems(account))
    expected_last_hash = last.hash if last is not None else ""
    if (account.last_hash or "") != expected_last_hash:
        problems.append("account last_hash does not match the last entry's hash")

    return AccountReport(
        account_id=account.pk,
        user_id=account.user.username,
        application_id=account.application_id,
        balance=account.balance,
        entries_sum=total,
        last_sequence=account.last_sequence,
        ok=not problems,
        problems=problems,
    )


def _block_problems(account: CreditAccount) -> list[str]:
    problems: list[str] = []
    open_total = 0
    blocks = CreditBlock.objects.filter(account_id=account.pk).annotate(drawn=Coalesce(Sum("draws__amount"), 0))
    for block in blocks.order_by("pk"):
        if block.remaining != block.amount - block.drawn:
            problems.append(
                f"block {block.pk}: remaining {block.remaining} != granted {block.amount} - drawn {block.drawn}"
            )
        if block.expired_at is None:
            open_total += block.remaining
        elif block.remaining != 0:
            problems.append(f"block {block.pk} expired with {block.remaining} credits left")
    if open_total != account.expiring:
        problems.append(f"expiring {account.expiring} != open blocks' remaining {open_total}")
    return problems[: MAX_PROBLEMS_PER_KIND * 2]


_EXPECTED_HOLD_ENTRIES: dict[str, tuple[int, int, int]] = {
    Hold.Status.PENDING: (1, 0, 0),
    Hold.Status.CAPTURED: (1, 1, 0),
    Hold.Status.RELEASED: (1, 0, 1),
    Hold.Status.EXPIRED: (1, 0, 1),
}


def _hold_problems(account: CreditAccount) -> list[str]:
    """Holds whose entries (hold, capture, release) do not match their status."""
    counts: dict[int, dict[str, int]] = {}
    rows = (
        LedgerEntry.objects.filter(
            account_id=account.pk, kind__in=(EntryKind.HOLD, EntryKind.CAPTURE, EntryKind.RELEASE)
        )
        .values_list("hold_id", "kind")
        .annotate(n=Count("id"))
    )
    for hold_id, kind, n in rows:
        counts.setdefault(hold_id, {})[kind] = n
    problems: list[str] = []
    for hold_id, status in Hold.objects.filter(account_id=account.pk).values_list("pk", "status").order_by("pk"):
        seen = counts.get(hold_id, {})
        found = (seen.get(EntryKind.HOLD, 0), seen.get(EntryKind.CAPTURE, 0), seen.get(EntryKind.RELEASE, 0))
        if found != _EXPECTED_HOLD_ENTRIES.get(status):
            problems.append(f"hold {hold_id} is {status} with {found[0]} hold, {found[1]} capture, {found[2]} release")
            if len(problems) >= MAX_PROBLEMS_PER_KIND:
                break
    return problems


def reconcile_accounts() -> list[AccountReport]:
    accounts = CreditAccount.objects.select_related("user").order_by("pk")
    return [reconcile_account(account) for account in accounts.iterator(chunk_size=500)]

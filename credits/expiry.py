"""Expiring credits: which blocks a movement takes from or gives back to.

Runs inside a movement, under the account's lock, so blocks need no locks of
their own. ``account.expiring`` (the sum of open blocks' ``remaining``) lets
accounts without expiring credits skip all of this with no query. The
database keeps ``0 <= expiring <= balance`` and ``0 <= remaining <= amount``.

- Spending (deduction, hold, negative adjustment) takes from the
  soonest-expiring open blocks first, so expiring credits are used before
  permanent ones.
- Giving back (refund, release, unused part of a capture) returns permanent
  credits first, then credits to the blocks the original movement took from,
  latest-expiring first; credits returned to a block that has expired
  meanwhile leave the balance at once through an expiry entry.
"""

from __future__ import annotations

from credits.models import BlockDraw, CreditAccount, CreditBlock, LedgerEntry


def open_blocks(account: CreditAccount) -> list[CreditBlock]:
    return list(
        CreditBlock.objects.filter(account=account, expired_at__isnull=True, remaining__gt=0).order_by(
            "expires_at", "pk"
        )
    )


def take(account: CreditAccount, entry: LedgerEntry, amount: int) -> int:
    """Take up to ``amount`` from open blocks for ``entry``; returns how much
    came from blocks."""
    if account.expiring <= 0 or amount <= 0:
        return 0
    wanted = min(amount, account.expiring)
    taken = 0
    draws: list[BlockDraw] = []
    for block in open_blocks(account):
        part = min(block.remaining, wanted - taken)
        block.remaining -= part
        block.save(update_fields=["remaining"])
        draws.append(BlockDraw(entry=entry, block=block, amount=part))
        taken += part
        if taken == wanted:
            break
    BlockDraw.objects.bulk_create(draws)
    account.expiring -= taken
    return taken


def give_back(
    account: CreditAccount, entry: LedgerEntry, source: LedgerEntry, source_total: int, amount: int
) -> list[tuple[CreditBlock, int]]:
    """Return ``amount`` of the ``source_total`` credits that ``source`` took.
    Returns the (block, credits) that went back to blocks expired meanwhile:
    the caller expires them with ``expire``."""
    drawn = list(
        BlockDraw.objects.filter(entry=source, amount__gt=0)
        .select_related("block")
        .order_by("-block__expires_at", "-block_id")
    )
    from_blocks = sum(d.amount for d in drawn)
    # Permanent credits go back first: only the part beyond them reaches blocks.
    to_blocks = min(max(0, amount - (source_total - from_blocks)), from_blocks)
    expired: list[tuple[CreditBlock, int]] = []
    back: list[BlockDraw] = []
    for draw in drawn:
        if to_blocks <= 0:
            break
        part = min(draw.amount, to_blocks)
        block = draw.block
        block.remaining += part
        block.save(update_fields=["remaining"])
        back.append(BlockDraw(entry=entry, block=block, amount=-part))
        to_blocks -= part
        if block.expired_at is None:
            account.expiring += part
        else:
            expired.append((block, part))
    BlockDraw.objects.bulk_create(back)
    return expired


def expire(account: CreditAccount, entry: LedgerEntry, parts: list[tuple[CreditBlock, int]]) -> None:
    """Record that ``entry`` (an expiry) took ``parts`` out of their blocks."""
    draws = []
    for block, part in parts:
        block.remaining -= part
        block.save(update_fields=["remaining"])
        draws.append(BlockDraw(entry=entry, block=block, amount=part))
        if block.expired_at is None:
            account.expiring -= part
    BlockDraw.objects.bulk_create(draws)

"""Transaction history of one address, newest first, in keyset pages.

A page is the transactions touching the address strictly older than the
cursor's position in (timestamp, transaction id) order, so a transaction
that arrives between two pages (newer than the cursor) never shifts the
pages that follow: no duplicate, no gap. The cursor is signed (Django's
``signing``, keyed by SECRET_KEY) and bound to the chain and address, so a
client cannot forge or reuse it elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.db.models import Q

from compliance import graph
from compliance.chains import CHAIN_SPECS
from compliance.models import Address, Transaction, Transfer
from compliance.units import format_units

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_SALT = "compliance.address_transactions"


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Page:
    transactions: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(chain: str, address: str, timestamp: int, tx_id: int) -> str:
    return signing.dumps([chain, address, timestamp, tx_id], salt=_SALT, compress=False)


def decode_cursor(cursor: str, chain: str, address: str) -> tuple[int, int]:
    try:
        c, a, timestamp, tx_id = signing.loads(cursor, salt=_SALT)
    except (signing.BadSignature, ValueError, TypeError):
        raise BadCursor("not a cursor this server issued") from None
    if (c, a) != (chain, address) or not isinstance(timestamp, int) or not isinstance(tx_id, int):
        raise BadCursor("the cursor belongs to another address")
    return timestamp, tx_id


def address_transactions(chain: str, address: str, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
    """A page of the transactions of ``address`` (normal form) on ``chain``.
    One entry per transaction and asset moved: the address's net amount."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1-{MAX_LIMIT}")
    after = decode_cursor(cursor, chain, address) if cursor else None
    row = Address.objects.filter(chain__code=chain, address=address).values_list("id", flat=True).first()
    if row is None:
        return Page([], None)
    positions: set[tuple[int, int]] = set()
    for column in ("from_address_id", "to_address_id"):
        query = Transfer.objects.filter(**{column: row})
        if after is not None:
            query = query.filter(Q(timestamp__lt=after[0]) | Q(timestamp=after[0], tx_id__lt=after[1]))
        positions.update(
            query.order_by("-timestamp", "-tx_id").values_list("timestamp", "tx_id").distinct()[: limit + 1]
        )
    ordered = sorted(positions, reverse=True)
    page, more = ordered[:limit], len(ordered) > limit
    out = _entries(chain, row, page)
    next_cursor = encode_cursor(chain, address, *page[-1]) if more and page else None
    return Page(out, next_cursor)


def transactions_among(chain: str, address: str, tx_hashes: Iterable[str]) -> list[dict[str, Any]]:
    """The entries (as in ``address_transactions``, newest first) of those of
    ``tx_hashes`` that touch ``address`` (normal form) on ``chain``."""
    row = Address.objects.filter(chain__code=chain, address=address).values_list("id", flat=True).first()
    if row is None:
        return []
    tx_ids = list(Transaction.objects.filter(chain__code=chain, hash__in=list(tx_hashes)).values_list("id", flat=True))
    if not tx_ids:
        return []
    positions = set(
        Transfer.objects.filter(Q(from_address_id=row) | Q(to_address_id=row), tx_id__in=tx_ids)
        .values_list("timestamp", "tx_id")
        .distinct()
    )
    return _entries(chain, row, sorted(positions, reverse=True))


def _entries(chain: str, row: int, page: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """One entry per transaction of ``page`` ((timestamp, tx id), newest
    first) and asset moved: the net amount of the address ``row``."""
    tx_ids = [tx for _, tx in page]
    txs = {
        pk: (hash_, block, fee)
        for pk, hash_, block, fee in Transaction.objects.filter(id__in=tx_ids).values_list(
            "id", "hash", "block_number", "fee"
        )
    }
    edges = list(
        Transfer.objects.filter(Q(from_address_id=row) | Q(to_address_id=row), tx_id__in=tx_ids)
        .order_by("tx_id", "index")
        .values_list("tx_id", "from_address_id", "to_address_id", "asset_id", "value")
    )
    asset_facts = graph.assets({e[3] for e in edges})
    names = graph.address_strings({a for e in edges for a in e[1:3] if a is not None and a != row})
    native_decimals = CHAIN_SPECS[chain].native_decimals if chain in CHAIN_SPECS else None
    by_tx: dict[int, dict[int, list[tuple[int | None, int | None, int]]]] = {}
    for tx_id, sender, receiver, asset_id, value in edges:
        by_tx.setdefault(tx_id, {}).setdefault(asset_id, []).append((sender, receiver, value))
    out: list[dict[str, Any]] = []
    for timestamp, tx_id in page:
        hash_, block, fee = txs[tx_id]
        for asset_id, moves in sorted(by_tx.get(tx_id, {}).items()):
            received = sum(v for s, r, v in moves if r == row and s != row)
            sent = sum(v for s, r, v in moves if s == row and r != row)
            net = received - sent
            direction = "in" if net > 0 else "out" if net < 0 else "self"
            # The main counterparty: the biggest other party on the side that won.
            others: dict[int | None, int] = {}
            for s, r, v in moves:
                if direction in ("in", "self") and r == row and s != row:
                    others[s] = others.get(s, 0) + v
                elif direction == "out" and s == row and r != row:
                    others[r] = others.get(r, 0) + v
            counterparty = max(others, key=lambda k: (others[k], -(k or 0)), default=None)
            fact = asset_facts[asset_id]
            out.append(
                {
                    "hash": hash_,
                    "timestamp": timestamp,
                    "direction": direction,
                    "counterparty": None if counterparty is None else names.get(counterparty),
                    "asset": fact.symbol or fact.contract,
                    "amount": format_units(abs(net), fact.decimals),
                    "blockNumber": block,
                    "fee": None if fee is None else format_units(fee, native_decimals),
                }
            )
    return out

"""What the other apps may use of credits (import-linter enforces it):
the ledger's movements and holds, prices, and the models the query
engine's catalog reads."""

from __future__ import annotations

from credits.models import CreditAccount, Hold, LedgerEntry
from credits.services import (
    Actor,
    InsufficientCredits,
    InvalidMovement,
    capture_hold,
    deduct_credits,
    grant_credits,
    hold_credits,
    price_of,
    release_hold,
)

__all__ = [
    "Actor",
    "CreditAccount",
    "Hold",
    "InsufficientCredits",
    "InvalidMovement",
    "LedgerEntry",
    "capture_hold",
    "deduct_credits",
    "grant_credits",
    "hold_credits",
    "price_of",
    "release_hold",
]

"""Demo credits for ``seed_demo``: the demo application's prices, so that
the ledger moves as the demo user works, and an opening grant per demo
member large enough for a long session (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, Sum

from accounts.interface import DemoData
from credits import services
from credits.models import LedgerEntry, Price

# Credits per request of each priced event in the demo application (Price
# rows: they override LEDGERCORE_PRICES; staff may change them in admin,
# seeding again keeps their changes).
DEMO_PRICES = {"query": 2, "chat": 3, "address_analysis": 5}
# At these prices about 3,000 requests: hours of clicking through the console.
DEMO_GRANT = 10_000
OPENING_KEY = "seed_demo:opening"


@dataclass(frozen=True)
class CreditsSeed:
    prices: dict[str, int]  # the demo application's prices now, by action
    granted: int  # credits granted by this run (0 when seeded before)


def seed_credits(demo: DemoData) -> CreditsSeed:
    for action, amount in DEMO_PRICES.items():
        Price.objects.get_or_create(application=demo.application, action=action, defaults={"amount": amount})
    granted = sum(_open(user.pk, demo.application.id) for user in demo.members)
    prices = dict(Price.objects.filter(application=demo.application).values_list("action", "amount"))
    return CreditsSeed(prices={action: int(amount) for action, amount in sorted(prices.items())}, granted=granted)


def _open(user_pk: int, application_id: str) -> int:
    """Bring the member's opening grants up to DEMO_GRANT: once on a new
    database; on one seeded with a smaller grant before, the difference."""
    opened = LedgerEntry.objects.filter(
        Q(idempotency_key=OPENING_KEY) | Q(idempotency_key__startswith=f"{OPENING_KEY}:"),
        account__user_id=user_pk,
        account__application_id=application_id,
    ).aggregate(total=Sum("amount"))["total"]
    missing = DEMO_GRANT - (opened or 0)
    if missing <= 0:
        return 0
    services.grant_credits(
        user_pk,
        application_id,
        missing,
        reason="demo opening balance",
        actor=services.Actor.system(),
        action="seed_demo",
        idempotency_key=f"{OPENING_KEY}:{DEMO_GRANT}",
    )
    return missing

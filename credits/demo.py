"""Demo credits for ``seed_demo``: an opening grant per demo member (idempotent)."""

from __future__ import annotations

from accounts.interface import DemoData
from credits import services

DEMO_GRANT = 1000


def seed_credits(demo: DemoData) -> None:
    for user in demo.members:
        services.grant_credits(
            user.pk,
            demo.application.id,
            DEMO_GRANT,
            reason="demo opening balance",
            actor=services.Actor.system(),
            action="seed_demo",
            idempotency_key="seed_demo:opening",
        )

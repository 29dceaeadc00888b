from typing import Any

from django.core.management.base import BaseCommand

from accounts.demo import seed_demo
from compliance.demo import seed_compliance_demo
from credits.demo import DEMO_GRANT, seed_credits
from marketdata.demo import seed_market_data


class Command(BaseCommand):
    help = (
        "Create (or bring up to date) the demo users and application, demo market data and the demo "
        "compliance graph. Safe to run repeatedly."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = seed_demo()
        credits = seed_credits(result)
        market = seed_market_data()
        compliance = seed_compliance_demo()
        self.stdout.write(
            f"demo application {result.application.id} with members "
            + ", ".join(u.username for u in result.members)
            + f" (opening balance {DEMO_GRANT} credits each; prices "
            + ", ".join(f"{action} {amount}" for action, amount in credits.prices.items())
            + f"); {market.inserted} new demo trades; "
            + f"{compliance.total_transfers} transfers in the demo compliance graph"
        )

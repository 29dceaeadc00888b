from typing import Any

from django.core.management.base import BaseCommand

from accounts.demo import seed_demo


class Command(BaseCommand):
    help = "Create (or bring up to date) the demo users and application. Safe to run repeatedly."

    def handle(self, *args: Any, **options: Any) -> None:
        result = seed_demo()
        self.stdout.write(
            f"demo application {result.application.id} with members " + ", ".join(u.username for u in result.members)
        )

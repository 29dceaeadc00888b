"""``manage.py serve``: the server process (``ledgercore.serve``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ledgercore.serve import main


class Command(BaseCommand):
    help = (
        "Serve HTTP and WebSocket with daphne (every daphne option; application defaults to "
        "ledgercore.asgi:application), draining gracefully on SIGTERM/SIGINT (--drain-seconds, "
        "default LEDGERCORE_DRAIN_SECONDS). See python -m ledgercore.serve --help."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        # daphne's options (-v, -p, ...) are not Django's: hand them over as they are.
        main(argv[2:])

    def handle(self, *args: Any, **options: Any) -> None:  # pragma: no cover - run_from_argv is the entry
        self.run_from_argv(["manage.py", "serve"])

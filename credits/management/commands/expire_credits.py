"""Expire credits whose grant has passed its expiry date (server processes
also do this in their outbox relay; this command is for cron or a one-off)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from credits.services import expire_credits, release_expired_holds


class Command(BaseCommand):
    help = "Write expiry entries for expired credit grants and release holds past their TTL."

    def handle(self, *args: Any, **options: Any) -> None:
        holds = release_expired_holds()
        blocks = expire_credits()
        self.stdout.write(f"{blocks} expired grant(s) closed, {holds} expired hold(s) released")

"""Verify every credit account against its ledger entries."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from credits.reconcile import reconcile_accounts


class Command(BaseCommand):
    help = "Check balances, sequences, lifetime counters and hash chains of every credit account."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the reports as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        reports = reconcile_accounts()
        failures = [r for r in reports if not r.ok]
        if options["json"]:
            self.stdout.write(json.dumps([r.as_dict() for r in reports], indent=2))
        else:
            for report in failures:
                self.stdout.write(
                    f"account {report.account_id} ({report.user_id} in {report.application_id}): "
                    + "; ".join(report.problems)
                )
            self.stdout.write(f"{len(reports)} accounts checked, {len(failures)} failing")
        if failures:
            raise CommandError(f"{len(failures)} of {len(reports)} accounts failed reconciliation")

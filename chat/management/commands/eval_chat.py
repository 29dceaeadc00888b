"""``manage.py eval_chat``: execution accuracy of a chat translator.

Creates a throwaway database (Django's test database for the configured
one: a separate SQLite file, or ``test_<name>`` on PostgreSQL), loads the
deterministic fixture, asks every question of ``chat/eval/questions.json``
and prints the share whose rows equal the expected ones, per table, per
category of each split (dev, held-out) and in total. The configured database is never written to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from chat.eval import fixtures, runner
from chat.translators import get_translator


class Command(BaseCommand):
    help = "Execution accuracy of a chat translator over the evaluation set (in a throwaway database)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--translator", default="builtin", help="builtin (default) or openai")
        parser.add_argument("--verbose-failures", action="store_true", help="print each wrong answer")
        parser.add_argument("--min-accuracy", type=float, default=0.0, help="exit 1 below this share (0-1)")

    def handle(self, *args: Any, **options: Any) -> None:
        settings_dict = connection.settings_dict
        old_name, old_test = settings_dict["NAME"], dict(settings_dict.get("TEST") or {})
        # A database of its own, never the configured one nor a test run's.
        if connection.vendor == "sqlite":
            throwaway = str(Path(settings.VAR_DIR) / f"chat-eval-{os.getpid()}.sqlite3")
        else:
            throwaway = f"{old_name}_chat_eval_{os.getpid()}"[:63]
        settings_dict["TEST"] = {**old_test, "NAME": throwaway}
        try:
            connection.creation.create_test_db(verbosity=0, autoclobber=True)
            try:
                fixture = fixtures.load()
                report = runner.evaluate(get_translator(options["translator"]), fixture)
            finally:
                connection.creation.destroy_test_db(old_name, verbosity=0)
        finally:
            settings_dict["TEST"] = old_test
        for table, (right, count) in sorted(report.by_table().items()):
            self.stdout.write(f"{table:16} {right:4d}/{count:<4d} {100 * right / count:6.1f}%")
        for split in ("dev", "heldout"):
            totals = report.by_category(split)
            right, count = sum(r for r, _ in totals.values()), sum(c for _, c in totals.values())
            if count:
                self.stdout.write(f"{split} split: {right}/{count} = {100 * right / count:.1f}%")
            for category, (right, count) in sorted(totals.items()):
                self.stdout.write(f"  {category:12} {right:4d}/{count:<4d} {100 * right / count:6.1f}%")
        if options["verbose_failures"]:
            for outcome in report.failures():
                question = outcome.question
                sql = outcome.translation.sql if outcome.translation else ""
                detail = outcome.error or f"rows {outcome.rows}"
                self.stdout.write(f"  #{question['id']} {question['question']!r}: {detail}\n    {sql}")
        total = len(report.outcomes)
        right = sum(o.correct for o in report.outcomes)
        self.stdout.write(
            f"execution accuracy of {options['translator']}: {right}/{total} = {100 * report.accuracy:.1f}%"
        )
        if report.accuracy < options["min_accuracy"]:
            raise SystemExit(1)

"""Import Google BigQuery public-dataset exports (CSV or JSON lines)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.bigquery import TABLES, import_bigquery_export


class Command(BaseCommand):
    help = (
        "Import crypto_ethereum.transactions / token_transfers or crypto_bitcoin.transactions exports "
        "(.csv, .json/.jsonl/.ndjson, optionally .gz). Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", required=True, choices=sorted(TABLES))
        parser.add_argument("--table", required=True, choices=["transactions", "token_transfers"])
        parser.add_argument("files", nargs="+", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        chain, table, files = options["chain"], options["table"], options["files"]
        if table not in TABLES[chain]:
            raise CommandError(f"{chain} has no {table} table; choose from {', '.join(TABLES[chain])}")
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CommandError(f"no such file: {', '.join(missing)}")
        started = time.perf_counter()
        try:
            result = import_bigquery_export(chain, table, files)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        created = ", ".join(f"{count} {kind}" for kind, count in result.created.items() if count)
        self.stdout.write(
            f"{chain}.{table}: {result.rows} rows read, {result.imported} imported, "
            f"{sum(result.skipped.values())} skipped; new: {created or 'nothing'} "
            f"({time.perf_counter() - started:.1f} s)"
        )
        for reason, count in result.skipped.most_common():
            self.stdout.write(f"  skipped {count}: {reason}")
        for example in result.examples:
            self.stdout.write(f"  e.g. {example}")
        if result.opaque_transactions:
            self.stdout.write(f"  {result.opaque_transactions} transaction(s) too large for derived edges")

"""Import trade files (Binance CSV as on data.binance.vision, ccxt JSON)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata import services
from marketdata.importers import TradeFileError, read_trades
from marketdata.management.options import symbol_option


class Command(BaseCommand):
    help = (
        "Import Binance aggTrades/trades CSV files (plain, .gz or .zip, with or without header) or ccxt JSON "
        "trade arrays (optionally gzipped). Idempotent: trades already stored are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--venue", default="binance", help="Venue code (created if missing). Default: binance.")
        parser.add_argument(
            "--symbol", required=True, help="Instrument as BASE-QUOTE, e.g. XRP-ETH (created if missing)."
        )
        parser.add_argument("--native", help="The venue's own symbol, e.g. XRPETH (recorded on the venue).")
        parser.add_argument("--batch-size", type=int, default=50_000, help="Trades per transaction. Default: 50000.")

    def handle(self, *args: Any, **options: Any) -> None:
        symbol = symbol_option(options["symbol"])
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be positive")
        services.ensure_listing(options["venue"], symbol, native=options["native"])
        total_read = total_inserted = 0
        started = time.perf_counter()
        for path in options["files"]:
            if not path.is_file():
                raise CommandError(f"no such file: {path}")
            read = inserted = 0
            try:
                trades = read_trades(path, venue=options["venue"], symbol=symbol)
                for batch in itertools.batched(trades, options["batch_size"]):
                    result = services.ingest_trades(list(batch), publish=False)
                    read += result.received
                    inserted += result.inserted
            except TradeFileError as exc:
                raise CommandError(f"{exc} ({inserted} trades of earlier batches were stored)") from None
            except services.InvalidTrades as exc:
                first = "; ".join(
                    f"trade {read + int(key.split('.')[0]) + 1} {key.split('.', 1)[1]}: {' '.join(messages)}"
                    for key, messages in list(exc.errors.items())[:5]
                )
                raise CommandError(f"{path}: {exc}: {first}") from None
            self.stdout.write(f"{path}: {read} trades read, {inserted} new, {read - inserted} already stored")
            total_read += read
            total_inserted += inserted
        elapsed = time.perf_counter() - started
        self.stdout.write(
            f"{total_read} trades read, {total_inserted} new, {total_read - total_inserted} already stored "
            f"in {elapsed:.2f}s ({options['venue']} {symbol})"
        )

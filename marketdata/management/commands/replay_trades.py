"""Play a trade file back as if live (for demos and load tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata import services
from marketdata.feeds import replay_forever
from marketdata.importers import TradeFileError, read_trades
from marketdata.management.options import symbol_option


class Command(BaseCommand):
    help = (
        "Replay a trade file (Binance CSV or ccxt JSON) as live trades: timestamps moved to now, pace kept "
        "(--speed N plays N times faster), ids made unique per run, so each run stores new trades and "
        "live charts move. On the embedded stack run it inside the server instead "
        "(LEDGERCORE_MARKET_REPLAY), since only the server process's subscribers can be reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--venue", default="binance")
        parser.add_argument("--symbol", required=True, help="BASE-QUOTE, e.g. XRP-ETH.")
        parser.add_argument("--speed", type=float, default=1.0, help="Replay speed factor. Default: 1 (real time).")
        parser.add_argument("--loops", type=int, default=1, help="Times to play the file; 0 = forever.")

    def handle(self, *args: Any, **options: Any) -> None:
        symbol = symbol_option(options["symbol"])
        if options["speed"] <= 0:
            raise CommandError("--speed must be positive")
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        services.ensure_listing(options["venue"], symbol)
        try:
            stored = replay_forever(
                lambda: read_trades(path, venue=options["venue"], symbol=symbol),
                lambda batch: services.ingest_trades(batch).inserted,
                speed=options["speed"],
                loops=options["loops"] or None,
            )
        except TradeFileError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"replayed {stored} trades of {path.name} as {symbol} on {options['venue']}")

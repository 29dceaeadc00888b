"""Follow live trades of exchanges through ccxt and store them."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata import services
from marketdata.feeds import ExchangeFeed, FeedsExtraMissing, ccxt_pro
from marketdata.management.options import symbol_option
from marketdata.trades import TradeInput


class Command(BaseCommand):
    help = (
        "Follow the trades of SYMBOLS (BASE-QUOTE) on a ccxt exchange (WebSocket stream when the exchange has "
        "one, else REST polling) and ingest them; reconnects with backoff; trades seen twice are stored once. "
        "Needs network access to the exchange."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("symbols", nargs="+", help="BASE-QUOTE symbols, e.g. BTC-USDT ETH-USDT.")
        parser.add_argument("--exchange", default="binance", help="ccxt exchange id. Default: binance.")
        parser.add_argument("--venue", help="Venue code to store under. Default: the exchange id.")
        parser.add_argument("--poll", action="store_true", help="Poll fetch_trades even if a stream exists.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            ccxtpro = ccxt_pro()
        except FeedsExtraMissing as exc:
            raise CommandError(str(exc)) from None
        exchange_id = options["exchange"]
        if exchange_id not in ccxtpro.exchanges:
            raise CommandError(f"unknown ccxt exchange {exchange_id!r}")
        symbols = [symbol_option(s) for s in options["symbols"]]
        venue = options["venue"] or exchange_id
        for symbol in symbols:
            services.ensure_listing(venue, symbol, native=symbol.replace("-", ""))
        exchange = getattr(ccxtpro, exchange_id)({"enableRateLimit": True})
        if options["poll"]:
            exchange.has["watchTrades"] = False

        async def ingest(batch: list[TradeInput]) -> int:
            return (await sync_to_async(services.ingest_trades, thread_sensitive=True)(batch)).inserted

        feed = ExchangeFeed(exchange, venue=venue, symbols=symbols, ingest=ingest)
        try:
            stats = asyncio.run(feed.run())
        except KeyboardInterrupt:
            stats = feed.stats
        self.stdout.write(f"{stats.received} trades received, {stats.inserted} stored, {stats.errors} errors")

"""Ingest Ethereum blocks, receipts and ERC-20 Transfer logs from a JSON-RPC node."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.rpc import EthBlockIngester, EthIngestResult, RpcClient, RpcError


class Command(BaseCommand):
    help = (
        "Read blocks with full transactions (eth_getBlockByNumber), their receipts and ERC-20 Transfer logs "
        "(eth_getLogs) from an Ethereum JSON-RPC node into the transaction graph. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rpc", required=True, help="JSON-RPC URL of the node, e.g. http://127.0.0.1:8545")
        parser.add_argument("--from", dest="start", type=int, help="first block (default: 0; with --follow: the head)")
        end = parser.add_mutually_exclusive_group()
        end.add_argument("--to", dest="end", type=int, help="last block, inclusive (default: the head)")
        end.add_argument("--follow", action="store_true", help="keep reading new blocks until interrupted")
        parser.add_argument("--batch", type=int, default=20, help="blocks per round of requests and commit")
        parser.add_argument(
            "--confirmations", type=int, default=0, help="stay this many blocks behind the head (reorganisations)"
        )
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --follow")
        parser.add_argument("--retries", type=int, default=4, help="retries of a failed request (backoff doubles)")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch"] < 1 or options["confirmations"] < 0:
            raise CommandError("--batch must be at least 1 and --confirmations at least 0")
        client = RpcClient(options["rpc"], timeout=options["timeout"], retries=options["retries"])
        ingester = EthBlockIngester(client, batch=options["batch"])
        verbosity = options["verbosity"]

        def progress(result: EthIngestResult) -> None:
            if verbosity >= 2 or options["follow"]:
                self.stdout.write(
                    f"  up to block {result.last_block}: {result.transactions} transactions, "
                    f"{result.transfers} transfers ({result.token_transfers} token)"
                )

        started = time.perf_counter()
        try:
            if options["follow"]:
                self.stdout.write(f"following {options['rpc']} (Ctrl-C to stop)")
                try:
                    ingester.follow(
                        options["start"],
                        confirmations=options["confirmations"],
                        interval=options["interval"],
                        on_batch=progress,
                    )
                except KeyboardInterrupt:
                    self.stdout.write("stopped")
                return
            start = options["start"] if options["start"] is not None else 0
            end = options["end"] if options["end"] is not None else ingester.head() - options["confirmations"]
            if end < start:
                self.stdout.write(f"nothing to read: block {start} is past {end}")
                return
            result = ingester.ingest(start, end, on_batch=progress)
        except RpcError as exc:
            raise CommandError(str(exc)) from None
        created = ", ".join(f"{count} {kind}" for kind, count in result.created.items() if count)
        self.stdout.write(
            f"ethereum blocks {start}-{end}: {result.transactions} transactions, {result.transfers} transfers "
            f"({result.token_transfers} token) read in {result.rpc_requests} requests; "
            f"new: {created or 'nothing'} ({time.perf_counter() - started:.1f} s)"
        )
        if result.skipped_logs:
            self.stdout.write(f"  {result.skipped_logs} Transfer-topic log(s) skipped (not ERC-20, or removed)")

"""Recompute the multi-input (common-input-ownership) clusters of a UTXO chain."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.addresses import UnknownChain
from compliance.clustering import DEFAULT_MAX_CLUSTER_SIZE, cluster_addresses


class Command(BaseCommand):
    help = "Cluster addresses spent together (skipping CoinJoin-like transactions). Deterministic and idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", default="bitcoin")
        parser.add_argument("--max-cluster-size", type=int, default=DEFAULT_MAX_CLUSTER_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = cluster_addresses(options["chain"], max_cluster_size=options["max_cluster_size"])
        except (UnknownChain, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{result.chain}: {result.clusters} clusters over {result.clustered_addresses} addresses "
            f"from {result.transactions_used} transactions ({result.coinjoins_skipped} CoinJoin-like and "
            f"{result.oversized_skipped} oversized skipped); {result.created} new, {result.removed} removed, "
            f"{result.reassigned} addresses reassigned"
        )

"""Demo compliance data for ``seed_demo``: a synthetic but plausible
transaction graph on ``ethereum`` and ``bitcoin``, so that every signal of
the address analysis, the transaction pages and the cross-border flows can be
seen on a fresh checkout.

What is in it (names are invented; only the OFAC addresses are real):
- exchanges in ten countries with hot wallets and labelled deposit
  addresses; deposits, sweeps, withdrawals and exchange-to-exchange
  rebalancing in ETH, USDT and USDC (the cross-border corridors);
- ordinary users paying each other, swapping on a DEX, gambling, bridging,
  using a payment processor, a no-KYC exchange and a P2P desk;
- an Ethereum mixer with fixed denominations and Bitcoin CoinJoins (which the
  clustering skips), a darknet market with vendors cashing out, a
  pig-butchering scam, a ransomware strain, a bridge exploit whose stolen
  funds are laundered through the mixer and peeling chains;
- real OFAC-listed addresses, read from the imported sanctions labels (never
  written in code), paying and paid by ordinary users, so that direct and
  indirect sanctions exposure appears; none are planted when the lists have
  not been imported;
- Bitcoin wallets that spend several of their addresses together, which is
  what the multi-input clustering finds.

Everything is a pure function of ``(seed, transfers)``: hashes and addresses
come from a hash of the seed, amounts and choices from a seeded generator.
Timestamps span the 90 days before the first run. The whole graph is written
in one transaction, so a second run finds it complete (its first transaction
exists) and writes nothing.

The graph's primitives are in compliance.demo_graph, its scenes in
compliance.demo_ethereum and compliance.demo_bitcoin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from compliance.addresses import BITCOIN, ETHEREUM
from compliance.batching import chunked
from compliance.demo_bitcoin import build_bitcoin
from compliance.demo_ethereum import build_ethereum
from compliance.demo_graph import DemoGraph, demo_tx_hash
from compliance.ingest import GraphWriter, PortRow, TransferRow, TxRow, insert_rows
from compliance.models import Address, AddressLabel, Chain, Entity, Transaction, Transfer
from compliance.ofac import default_ofac_directory, import_ofac_lists
from compliance.services import ensure_chain

DEMO_SOURCE = "demo"
ETHEREUM_SHARE = 0.65
MAX_OFAC_PER_CHAIN = 6


@dataclass(frozen=True)
class DemoSummary:
    written: bool  # False: the same graph was already there
    transfers: dict[str, int]
    transactions: dict[str, int]
    addresses: dict[str, int]
    entities: int
    labels: int
    ofac_planted: dict[str, list[str]]
    seconds: float

    @property
    def total_transfers(self) -> int:
        return sum(self.transfers.values())


class _Builder(DemoGraph):
    """The whole demo graph: the Ethereum scenes, then the Bitcoin ones."""

    def build_ethereum(self, target: int, ofac: list[str]) -> None:
        build_ethereum(self, target, ofac)

    def build_bitcoin(self, target: int, ofac: list[str]) -> None:
        build_bitcoin(self, target, ofac)


def _ofac_addresses(chain: str) -> list[str]:
    """Up to a handful of actively listed OFAC addresses of the chain, spread
    over the sorted list so that every run picks the same ones."""
    listed = sorted(
        set(
            AddressLabel.objects.filter(
                source__startswith="ofac:", delisted_at=None, address__chain__code=chain
            ).values_list("address__address", flat=True)
        )
    )
    if len(listed) <= MAX_OFAC_PER_CHAIN:
        return listed
    step = len(listed) / MAX_OFAC_PER_CHAIN
    return [listed[int(i * step)] for i in range(MAX_OFAC_PER_CHAIN)]


def _write(chain: Chain, txs: list[TxRow], transfers: list[TransferRow], ports: list[tuple[str, PortRow]]) -> None:
    writer = GraphWriter(chain, batch_size=10**9)
    writer.extend(
        transactions=txs,
        transfers=transfers,
        inputs=[p for side, p in ports if side == "in"],
        outputs=[p for side, p in ports if side == "out"],
    )
    writer.close()


def _write_labels(builder: _Builder, chains: dict[str, Chain], version: str) -> int:
    entities: dict[str, Entity] = {}
    for key, (name, category, country) in builder.entities.items():
        entity, _ = Entity.objects.get_or_create(
            name=name,
            defaults={"category": category, "country": country, "description": "Synthetic demo entity."},
        )
        entities[key] = entity
    listed_at = timezone.now()
    wanted: dict[tuple[str, str, str], tuple[int, str]] = {}
    for code, address, key, confidence, note in builder.labels:
        wanted[(code, address, key)] = (confidence, note)
    ids: dict[tuple[str, str], int] = {}
    for code, chain in chains.items():
        addresses = sorted({a for c, a, _ in wanted if c == code})
        insert_rows(Address, ("chain_id", "address"), ((chain.pk, a) for a in addresses))
        for chunk in chunked(addresses):
            for pk, address in Address.objects.filter(chain=chain, address__in=chunk).values_list("id", "address"):
                ids[(code, address)] = pk
    insert_rows(
        AddressLabel,
        ("address_id", "entity_id", "source", "source_version", "confidence", "listed_at", "note", "created_at"),
        (
            (ids[(code, address)], entities[key].pk, DEMO_SOURCE, version, confidence, listed_at, note, listed_at)
            for (code, address, key), (confidence, note) in wanted.items()
        ),
    )
    return len(wanted)


def seed_compliance_data(transfers: int = 100_000, seed: int = 7) -> DemoSummary:
    """Write the demo graph (at least ``transfers`` valued transfers over both
    chains) unless it is already there. Reads the OFAC addresses to plant from
    the imported sanctions labels: import the lists first.

    The graph is written in one transaction, so finding its first transaction
    on both chains means it is complete: then nothing is generated or written
    and the summary counts what the database holds for both chains."""
    started = time.perf_counter()
    chains = {ETHEREUM: ensure_chain(ETHEREUM), BITCOIN: ensure_chain(BITCOIN)}
    if all(
        Transaction.objects.filter(chain=chain, hash=demo_tx_hash(code, seed, transfers, 1)).exists()
        for code, chain in chains.items()
    ):
        return DemoSummary(
            written=False,
            transfers={c: Transfer.objects.filter(tx__chain=chain).count() for c, chain in chains.items()},
            transactions={c: Transaction.objects.filter(chain=chain).count() for c, chain in chains.items()},
            addresses={c: Address.objects.filter(chain=chain).count() for c, chain in chains.items()},
            entities=Entity.objects.filter(labels__source=DEMO_SOURCE).distinct().count(),
            labels=AddressLabel.objects.filter(source=DEMO_SOURCE, delisted_at=None).count(),
            ofac_planted={},
            seconds=time.perf_counter() - started,
        )
    ofac = {code: _ofac_addresses(code) for code in chains}
    now_ms = (int(time.time() * 1000) // 60_000) * 60_000
    builder = _Builder(seed, transfers, now_ms)
    builder.build_ethereum(int(transfers * ETHEREUM_SHARE), ofac[ETHEREUM])
    builder.build_bitcoin(transfers - len(builder.eth_transfers), ofac[BITCOIN])
    with transaction.atomic():
        _write(chains[ETHEREUM], builder.eth_txs, builder.eth_transfers, [])
        _write(chains[BITCOIN], builder.btc_txs, builder.btc_transfers, builder.btc_ports)
        labels = _write_labels(builder, chains, f"seed-{seed}-{transfers}")
    addresses: dict[str, set[str]] = {ETHEREUM: set(), BITCOIN: set()}
    for chain, rows in ((ETHEREUM, builder.eth_transfers), (BITCOIN, builder.btc_transfers)):
        for row in rows:
            addresses[chain].update(a for a in (row.from_address, row.to_address) if a)
    return DemoSummary(
        written=True,
        transfers={ETHEREUM: len(builder.eth_transfers), BITCOIN: len(builder.btc_transfers)},
        transactions={ETHEREUM: len(builder.eth_txs), BITCOIN: len(builder.btc_txs)},
        addresses={chain: len(found) for chain, found in addresses.items()},
        entities=len(builder.entities),
        labels=labels,
        ofac_planted=ofac,
        seconds=time.perf_counter() - started,
    )


def seed_compliance_demo(**kwargs: Any) -> DemoSummary:
    """What ``seed_demo`` runs: the OFAC lists (when the folder is there),
    then the demo graph with real sanctioned addresses planted in it."""
    directory = default_ofac_directory()
    if directory is not None and directory.is_dir():
        import_ofac_lists(directory)
    return seed_compliance_data(**kwargs)

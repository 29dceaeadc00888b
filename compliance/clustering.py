"""Common-input-ownership clustering for UTXO chains.

Addresses whose coins are spent together as inputs of one transaction are
assumed to share an owner (the wallet had to sign for all of them), and the
relation is closed transitively with union-find.

Two guards keep one wrong assumption from merging half the chain:
- CoinJoin-like transactions (at least two input addresses and three or more
  outputs of the same value) are skipped: their inputs belong to different
  people by design.
- A transaction whose union would make a cluster larger than
  ``max_cluster_size`` is skipped as a whole.

Transactions are read in (block time, hash) order, which makes the guard's
decisions, and so the clusters, the same for the same data on any database.
A cluster's ``key`` is its lexicographically smallest member address: the same
partition always yields the same keys. Recomputing replaces the chain's
multi-input clusters; clusters an analyst made (``manual``) keep their
addresses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import groupby

from django.db import transaction

from compliance.addresses import UnknownChain
from compliance.batching import chunked
from compliance.models import Address, Chain, ChainKind, Cluster, TxInput, TxOutput

DEFAULT_MAX_CLUSTER_SIZE = 50_000
_COINJOIN_EQUAL_OUTPUTS = 3


@dataclass(frozen=True)
class ClusteringResult:
    chain: str
    clusters: int
    clustered_addresses: int
    transactions_used: int
    coinjoins_skipped: int
    oversized_skipped: int
    created: int
    removed: int
    reassigned: int


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.size: dict[int, int] = {}

    def find(self, item: int) -> int:
        parent = self.parent.setdefault(item, item)
        if parent == item:
            self.size.setdefault(item, 1)
            return item
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union_size(self, items: list[int]) -> int:
        roots = {self.find(i) for i in items}
        return sum(self.size[r] for r in roots)

    def union(self, items: list[int]) -> None:
        roots = sorted({self.find(i) for i in items}, key=lambda r: (-self.size[r], r))
        head = roots[0]
        for other in roots[1:]:
            self.parent[other] = head
            self.size[head] += self.size.pop(other)


def _coinjoin_like(tx_ids: list[int]) -> set[int]:
    flagged: set[int] = set()
    for chunk in chunked(tx_ids):
        values: dict[int, Counter[int]] = {}
        for tx_id, value in TxOutput.objects.filter(tx_id__in=chunk).values_list("tx_id", "value"):
            if value:
                values.setdefault(tx_id, Counter())[value] += 1
        flagged.update(t for t, counts in values.items() if max(counts.values()) >= _COINJOIN_EQUAL_OUTPUTS)
    return flagged


def cluster_addresses(chain: str, *, max_cluster_size: int = DEFAULT_MAX_CLUSTER_SIZE) -> ClusteringResult:
    """Recompute the multi-input clusters of a UTXO chain from its stored inputs."""
    chain_row = Chain.objects.filter(code=chain).first()
    if chain_row is None:
        raise UnknownChain(f"unknown chain {chain[:40]!r}")
    if chain_row.kind != ChainKind.UTXO:
        raise ValueError(f"multi-input clustering applies to UTXO chains; {chain} is an account chain")

    rows = (
        TxInput.objects.filter(tx__chain=chain_row, address__isnull=False)
        .order_by("tx__timestamp", "tx__hash", "index")
        .values_list("tx_id", "address_id")
    )
    spenders: list[tuple[int, list[int]]] = []
    for tx_id, group in groupby(rows.iterator(chunk_size=10_000), key=lambda r: r[0]):
        addresses = sorted({address_id for _, address_id in group})
        if len(addresses) > 1:
            spenders.append((tx_id, addresses))
    coinjoins = _coinjoin_like([tx_id for tx_id, _ in spenders])

    forest = _UnionFind()
    used = oversized = 0
    for tx_id, addresses in spenders:
        if tx_id in coinjoins:
            continue
        if forest.union_size(addresses) > max_cluster_size:
            oversized += 1
            continue
        forest.union(addresses)
        used += 1

    members: dict[int, list[int]] = {}
    for item in forest.parent:
        members.setdefault(forest.find(item), []).append(item)
    names: dict[int, str] = {}
    all_ids = sorted(forest.parent)
    for chunk in chunked(all_ids):
        names.update(Address.objects.filter(id__in=chunk).values_list("id", "address"))
    groups = {min(names[i] for i in ids): ids for ids in members.values() if len(ids) > 1}

    with transaction.atomic():
        return _store(chain_row, groups, used, len(coinjoins), oversized)


def _store(chain: Chain, groups: dict[str, list[int]], used: int, coinjoins: int, oversized: int) -> ClusteringResult:
    heuristic = Cluster.Heuristic.MULTI_INPUT
    protected = set(
        Address.objects.filter(chain=chain, cluster__heuristic=Cluster.Heuristic.MANUAL).values_list("id", flat=True)
    )
    assigned = {key: [a for a in ids if a not in protected] for key, ids in groups.items()}
    existing: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for key, pk, size in Cluster.objects.filter(chain=chain, heuristic=heuristic).values_list("key", "id", "size"):
        existing[key], sizes[key] = pk, size
    new_keys = [k for k in groups if k not in existing]
    Cluster.objects.bulk_create(
        [Cluster(chain=chain, heuristic=heuristic, key=k, size=len(assigned[k])) for k in new_keys], batch_size=1000
    )
    for chunk in chunked(new_keys):
        existing.update(
            Cluster.objects.filter(chain=chain, heuristic=heuristic, key__in=chunk).values_list("key", "id")
        )
    resized = [
        Cluster(pk=existing[k], size=len(ids)) for k, ids in assigned.items() if sizes.get(k, len(ids)) != len(ids)
    ]
    Cluster.objects.bulk_update(resized, ["size"], batch_size=500)

    wanted = {address_id: existing[k] for k, ids in assigned.items() for address_id in ids}
    current = dict(Address.objects.filter(chain=chain, cluster__heuristic=heuristic).values_list("id", "cluster_id"))
    for id_chunk in chunked(sorted(wanted)):
        current.update(Address.objects.filter(id__in=id_chunk).values_list("id", "cluster_id"))
    changes = [
        Address(pk=address_id, cluster_id=wanted.get(address_id))
        for address_id, cluster_id in current.items()
        if address_id not in protected and wanted.get(address_id) != cluster_id
    ]
    Address.objects.bulk_update(changes, ["cluster"], batch_size=500)
    stale = [pk for key, pk in existing.items() if key not in groups]
    for id_chunk in chunked(stale):
        Cluster.objects.filter(id__in=id_chunk).delete()
    return ClusteringResult(
        chain=chain.code,
        clusters=len(groups),
        clustered_addresses=len(wanted),
        transactions_used=used,
        coinjoins_skipped=coinjoins,
        oversized_skipped=oversized,
        created=len(new_keys),
        removed=len(stale),
        reassigned=len(changes),
    )

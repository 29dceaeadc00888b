"""The walk of the analysis over a ``GraphSource``: funds followed one hop at
a time in one direction with the haircut described in compliance.analysis,
stopping at attributed addresses; and the peeling-chain behaviour.

``GraphSource`` is what the analysis reads: ``DatabaseGraph``
(compliance.jobs) reads the stored graph, ``MemoryGraph`` a hand-built one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal, NamedTuple, Protocol, cast

from compliance.graph import AssetFact, Edge, EdgeBatch, LabelFact
from compliance.scoring import pick_label

Walk = Literal["in", "out"]
Progress = Callable[[str, int], None]

PEELING_MIN_STEPS = 3
PEELING_MAX_STEPS = 10
PEELING_KEEP_SHARE = Fraction(7, 10)  # the change keeps at least 70%
CLUSTER_LABEL_SAMPLE = 10_000  # members of a giant cluster read to attribute it (DatabaseGraph)


@dataclass(frozen=True)
class Limits:
    max_edges_per_hop: int = 20_000
    max_edges: int = 100_000
    max_frontier: int = 2_000


class ClusterFact(NamedTuple):
    id: int
    heuristic: str
    size: int
    entity: LabelFact | None  # the analyst's attribution of the whole cluster


class GraphSource(Protocol):
    """What the analysis reads; ``DatabaseGraph`` (compliance.jobs) and
    ``MemoryGraph`` (hand-built graphs) implement it."""

    def edges(self, ids: Collection[int], walk: Walk, limit: int) -> EdgeBatch: ...

    def labels(self, ids: Collection[int]) -> dict[int, list[LabelFact]]: ...

    def clusters(self, ids: Collection[int]) -> dict[int, ClusterFact]: ...

    def cluster_labels(self, cluster_id: int, exclude: int) -> list[LabelFact]: ...

    def tx_hashes(self, tx_ids: Collection[int]) -> dict[int, str]: ...

    def address_strings(self, ids: Collection[int]) -> dict[int, str]: ...

    def assets(self, ids: Collection[int]) -> dict[int, AssetFact]: ...


# --- a hand-built graph ------------------------------------------------------------------


@dataclass
class MemoryGraph:
    """An in-memory ``GraphSource`` (tests, benchmarks' baselines)."""

    edge_list: list[Edge]
    label_map: dict[int, list[LabelFact]] = field(default_factory=dict)
    cluster_map: dict[int, ClusterFact] = field(default_factory=dict)
    asset_map: dict[int, AssetFact] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    def edges(self, ids: Collection[int], walk: Walk, limit: int) -> EdgeBatch:
        wanted = set(ids)
        side = 3 if walk == "in" else 2  # to_id / from_id
        found = sorted(
            (e for e in self.edge_list if e[side] in wanted and e.value > 0), key=lambda e: (e.timestamp, e.id)
        )
        return EdgeBatch(found[-limit:], len(found) > limit)

    def labels(self, ids: Collection[int]) -> dict[int, list[LabelFact]]:
        return {i: self.label_map[i] for i in ids if i in self.label_map}

    def clusters(self, ids: Collection[int]) -> dict[int, ClusterFact]:
        return {i: self.cluster_map[i] for i in ids if i in self.cluster_map}

    def cluster_labels(self, cluster_id: int, exclude: int) -> list[LabelFact]:
        members = [a for a, c in self.cluster_map.items() if c.id == cluster_id and a != exclude]
        return [label for a in sorted(members) for label in self.label_map.get(a, [])]

    def tx_hashes(self, tx_ids: Collection[int]) -> dict[int, str]:
        return {t: f"tx{t}" for t in tx_ids}

    def address_strings(self, ids: Collection[int]) -> dict[int, str]:
        return {i: self.names.get(i, f"addr{i}") for i in ids}

    def assets(self, ids: Collection[int]) -> dict[int, AssetFact]:
        return {i: self.asset_map.get(i, AssetFact(i, "test", f"A{i}", "", 0)) for i in ids}


# --- the walk ------------------------------------------------------------------------------


@dataclass
class Hit:
    """An attributed address reached by the walk: where it stops."""

    walk: Walk
    address_id: int
    asset_id: int
    hops: int
    amount: Fraction  # base units of the target's flow attributed to it
    path: tuple[int, ...]  # transaction ids, hop by hop from the target outwards
    label: LabelFact


@dataclass
class Walker:
    walk: Walk
    target: int
    source: GraphSource
    limits: Limits
    hops: int = 0
    flows: dict[tuple[int, int], Fraction] = field(default_factory=dict)  # (address, asset) -> amount
    paths: dict[tuple[int, int], tuple[Fraction, tuple[int, ...]]] = field(default_factory=dict)
    totals: dict[int, int] = field(default_factory=dict)  # asset -> the target's volume this way
    visited: set[int] = field(default_factory=set)
    hits: list[Hit] = field(default_factory=list)
    edges_read: int = 0
    truncated: bool = False
    done: bool = False

    def __post_init__(self) -> None:
        self.visited.add(self.target)

    def step(self, budget: int) -> int:
        """Expand one hop with at most ``budget`` edges; returns edges read."""
        if self.done:
            return 0
        self.hops += 1
        frontier = self._frontier()
        if not frontier or budget <= 0:
            self.truncated = self.truncated or (bool(frontier) and budget <= 0)
            self.done = True
            return 0
        batch = self.source.edges(frontier, self.walk, budget)
        self.truncated = self.truncated or batch.truncated
        near, far = (3, 2) if self.walk == "in" else (2, 3)  # this side / counterparty (Edge fields)
        denominators: dict[tuple[int, int], int] = {}
        for edge in batch.edges:
            if edge[near] != edge[far]:  # change back to oneself moves nothing
                key = (cast(int, edge[near]), edge.asset_id)
                denominators[key] = denominators.get(key, 0) + edge.value
        if self.hops == 1:
            self.totals = {asset: total for (_, asset), total in denominators.items()}
        reached: dict[tuple[int, int], Fraction] = {}
        best: dict[tuple[int, int], tuple[Fraction, tuple[int, ...]]] = {}
        for edge in batch.edges:
            here, there = cast(int, edge[near]), cast(int | None, edge[far])
            if there is None or here == there or there in self.visited:
                continue
            key = (here, edge.asset_id)
            if self.hops == 1:
                carried = Fraction(edge.value)
            else:  # haircut: this address's share of what reached it
                carried = self.flows.get(key, Fraction(0)) * edge.value / denominators[key]
            if carried == 0:
                continue
            onward = (there, edge.asset_id)
            reached[onward] = reached.get(onward, Fraction(0)) + carried
            via = self.paths[key][1] if self.hops > 1 else ()
            if onward not in best or carried > best[onward][0]:
                best[onward] = (carried, (*via, edge.tx_id))
        self.flows = reached
        self.paths = best
        self.visited.update(address for address, _ in reached)
        self.edges_read += len(batch.edges)
        return len(batch.edges)

    def _frontier(self) -> list[int]:
        if self.hops == 1:
            return [self.target]
        shares: dict[int, Fraction] = {}
        for (address, asset), amount in self.flows.items():
            total = self.totals.get(asset) or 1
            shares[address] = max(shares.get(address, Fraction(0)), amount / total)
        ranked = sorted(shares, key=lambda a: (-shares[a], a))
        if len(ranked) > self.limits.max_frontier:
            self.truncated = True
        keep = set(ranked[: self.limits.max_frontier])
        self.flows = {k: v for k, v in self.flows.items() if k[0] in keep}
        return sorted(keep)

    def settle(self, attribution: dict[int, LabelFact]) -> None:
        """Attributed addresses reached at this hop become hits and stop."""
        for (address, asset), amount in sorted(self.flows.items()):
            label = attribution.get(address)
            if label is None:
                continue
            self.hits.append(Hit(self.walk, address, asset, self.hops, amount, self.paths[(address, asset)][1], label))
        self.flows = {k: v for k, v in self.flows.items() if k[0] not in attribution}

    def reached(self) -> set[int]:
        return {address for address, _ in self.flows}


def attribute(source: GraphSource, ids: Collection[int]) -> dict[int, LabelFact]:
    if not ids:
        return {}
    result: dict[int, LabelFact] = {}
    labels = source.labels(ids)
    for address, facts in labels.items():
        label = pick_label(facts)
        if label is not None:
            result[address] = label
    for address, cluster in source.clusters([i for i in ids if i not in result]).items():
        if cluster.entity is not None:
            result[address] = cluster.entity
    return result


# --- behaviours ----------------------------------------------------------------------------


def detect_peeling(source: GraphSource, target: int) -> tuple[int, tuple[int, ...], int] | None:
    """(steps, transaction ids of the change, asset) of a peeling chain starting at the
    target: each step sends a small slice away and keeps most (the change)
    on a fresh address, which does the same."""
    current, seen, path, asset = target, {target}, [], None
    for _ in range(PEELING_MAX_STEPS):
        edges = [
            e
            for e in source.edges([current], "out", 50).edges
            if e.to_id is not None and e.to_id != current and (asset is None or e.asset_id == asset)
        ]
        by_asset: dict[int, list[Edge]] = {}
        for edge in edges:
            by_asset.setdefault(edge.asset_id, []).append(edge)
        step = None
        for asset_id, group in sorted(by_asset.items()):
            if not 2 <= len(group) <= 4:
                continue
            total = sum(e.value for e in group)
            change = max(group, key=lambda e: (e.value, -e.id))
            if total and Fraction(change.value, total) >= PEELING_KEEP_SHARE and change.to_id not in seen:
                step = (asset_id, change)
                break
        if step is None:
            break
        asset, change = step
        path.append(change.tx_id)
        current = change.to_id  # type: ignore[assignment]
        seen.add(current)
    if len(path) >= PEELING_MIN_STEPS and asset is not None:
        return len(path), tuple(path), asset
    return None

"""Explainable address risk analysis: exposure by entity category through up
to ``hops`` hops in both directions, ownership, behaviours, one score.

Model (documented in README "Compliance"):

- **Ownership**: an active label on the address itself, or on its cluster
  (an attributed cluster or a labelled fellow member), of a risky category.
- **Exposure**: funds are followed backwards (source of funds, ``in``) and
  forwards (destination of funds, ``out``), one asset at a time. A hop-1
  counterparty carries the full value of its transfers; beyond it the
  amount is shared out in proportion to value (haircut): an unattributed
  address that received 30 of its 100 units of inflow from Y passes 30% of
  what it sent on to Y. The walk stops at any attributed address (a known
  service, as the commercial tools do) and never revisits an address.
  Amounts stay exact (``Fraction`` of base units) and are rounded down to a
  whole base unit only when shown.
- **Behaviours**: a peeling chain (the address forwards most of its funds
  to a fresh address that does the same, shaving a small slice off at
  each step).
- **Score**: each signal has a raw weight, category weight x hop factor x
  share factor; ownership and direct sanctions exposure weigh 100. The
  score is their sum capped at 100, and each signal's ``contribution`` is
  its share of it (integers adding up to ``riskScore``). Levels: severe
  from 75 (and always for sanctions ownership or direct sanctions
  exposure), high from 50, medium from 25, else low.
- **Guards**: the edges read per hop and in total, and the addresses
  expanded per hop, are bounded; hitting a bound sets ``truncated``.

Everything here is deterministic: same data and input, same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal, NamedTuple, Protocol, cast

from compliance.chains import STABLECOINS
from compliance.graph import AssetFact, Edge, EdgeBatch, LabelFact
from compliance.models import EntityCategory
from compliance.units import format_units

Walk = Literal["in", "out"]
Progress = Callable[[str, int], None]

C = EntityCategory
# How much a category weighs in the score (0: licit, reported as exposure only).
RISK_WEIGHTS: dict[str, int] = {
    C.SANCTIONS: 100,
    C.RANSOMWARE: 95,
    C.STOLEN_FUNDS: 90,
    C.DARKNET_MARKET: 90,
    C.SCAM: 85,
    C.MIXER: 80,
    C.NO_KYC_EXCHANGE: 50,
    C.GAMBLING: 40,
    C.P2P_EXCHANGE: 30,
    C.OTHER: 20,
    C.BRIDGE: 10,
    C.DEFI: 5,
    C.EXCHANGE: 0,
    C.PAYMENT_PROCESSOR: 0,
    C.MINING_POOL: 0,
}
HOP_FACTORS = {1: 1.0, 2: 0.6, 3: 0.4, 4: 0.25, 5: 0.15}
CLUSTER_OWNERSHIP_FACTOR = 0.8
PEELING_WEIGHT = 25.0
PEELING_MIN_STEPS = 3
PEELING_MAX_STEPS = 10
PEELING_KEEP_SHARE = Fraction(7, 10)  # the change keeps at least 70%
LEVELS = ((75, "severe"), (50, "high"), (25, "medium"), (0, "low"))
CLUSTER_LABEL_SAMPLE = 10_000
MAX_SOURCES = 5


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


# --- amounts -------------------------------------------------------------------------------


def usd_value(base_units: int, asset: AssetFact) -> float | None:
    """Dollar stablecoins count at 1 USD; no other asset is priced here."""
    if asset.symbol not in STABLECOINS or asset.decimals is None:
        return None
    return float(round(Decimal(base_units).scaleb(-asset.decimals), 2))


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
class _Walker:
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


def pick_label(labels: Iterable[LabelFact]) -> LabelFact | None:
    """The attribution that matters most: riskiest category, then confidence."""
    ranked = sorted(labels, key=lambda f: (-RISK_WEIGHTS.get(f.category, 0), -f.confidence, f.entity_id, f.source))
    return ranked[0] if ranked else None


def _attribute(source: GraphSource, ids: Collection[int]) -> dict[int, LabelFact]:
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


# --- scoring -------------------------------------------------------------------------------


def share_factor(share: float) -> float:
    return 0.25 + 0.75 * math.sqrt(max(0.0, min(1.0, share)))


def exposure_weight(category: str, hops: int, share: float) -> float:
    """Raw weight of an exposure signal; direct sanctions exposure weighs 100."""
    if category == C.SANCTIONS and hops == 1:
        return 100.0
    return RISK_WEIGHTS.get(category, 0) * HOP_FACTORS.get(hops, 0.1) * share_factor(share)


def severity_of(raw: float) -> str:
    for floor, level in LEVELS:
        if raw >= floor:
            return level
    return "low"


def apportion_score(raws: list[float]) -> tuple[int, list[int]]:
    """The score (sum capped at 100, rounded) and integer contributions that
    add up to it exactly (largest remainder, ties to the earlier signal)."""
    total = sum(raws)
    if total <= 0:
        return 0, [0] * len(raws)
    score = min(100, round(total))
    exact = [r * score / total for r in raws]
    parts = [math.floor(x) for x in exact]
    order = sorted(range(len(raws)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: score - sum(parts)]:
        parts[i] += 1
    return score, parts


def risk_level(score: int, forced_severe: bool) -> str:
    return "severe" if forced_severe else severity_of(score)


# --- the analysis --------------------------------------------------------------------------


def _sources(labels: Iterable[LabelFact]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], int] = {}
    for label in labels:
        key = (label.source, label.source_version)
        seen[key] = max(seen.get(key, 0), label.confidence)
    return [
        {"source": s, "version": v, "confidence": c}
        for (s, v), c in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))
    ][:MAX_SOURCES]


def _entity(label: LabelFact) -> dict[str, Any]:
    return {"name": label.entity_name, "category": label.category, "country": label.country}


def analyse(
    source: GraphSource,
    target: int | None,
    *,
    chain: str,
    address: str,
    hops: int = 2,
    limits: Limits | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The analysis of ``target`` (an address id; None: never seen, so only
    an empty result). ``progress(stage, pct)`` is called as it goes."""
    limits = limits or Limits()
    report = progress or (lambda stage, pct: None)
    if not 1 <= hops <= 5:
        raise ValueError("hops must be 1-5")
    report("resolve", 5)
    result: dict[str, Any] = {
        "chain": chain,
        "address": address,
        "hops": hops,
        "known": target is not None,
        "riskScore": 0,
        "riskLevel": "low",
        "clusters": [],
        "signals": [],
        "exposure": [],
        "rules": [],
        "truncated": False,
        "stats": {"addressesVisited": 0, "edgesRead": 0},
    }
    if target is None:
        for stage, pct in (("labels", 10), ("exposure", 85), ("score", 92), ("explain", 97)):
            report(stage, pct)
        return result

    # Ownership: the address's own labels and its cluster.
    report("labels", 10)
    signals: list[dict[str, Any]] = []
    raws: list[float] = []
    forced_severe = False
    own = source.labels([target]).get(target, [])
    clusters = source.clusters([target])
    cluster = clusters.get(target)
    for category in sorted({f.category for f in own}, key=lambda c: (-RISK_WEIGHTS.get(c, 0), c)):
        weight = RISK_WEIGHTS.get(category, 0)
        facts = [f for f in own if f.category == category]
        if weight <= 0:
            continue
        forced_severe |= category == C.SANCTIONS
        label = pick_label(facts)
        assert label is not None
        signals.append(
            {
                "type": "ownership",
                "category": category,
                "direction": None,
                "hops": 0,
                "amount": None,
                "asset": None,
                "amountUSD": None,
                "share": None,
                "path": [],
                "rule": "SANCTIONS_OWNERSHIP" if category == C.SANCTIONS else "RISKY_OWNERSHIP",
                "entity": _entity(label),
                "sources": _sources(facts),
                "description": f"The address is attributed to {label.entity_name} ({category}).",
            }
        )
        raws.append(float(weight))
    cluster_out: list[dict[str, Any]] = []
    if cluster is not None:
        members = source.cluster_labels(cluster.id, target)
        attributed = cluster.entity or pick_label(members)
        cluster_out.append(
            {
                "id": cluster.id,
                "heuristic": cluster.heuristic,
                "size": cluster.size,
                "entity": None if attributed is None else attributed.entity_name,
                "category": None if attributed is None else attributed.category,
            }
        )
        cluster_facts = [*members, *([cluster.entity] if cluster.entity else [])]
        own_categories = {f.category for f in own}
        for category in sorted({f.category for f in cluster_facts} - own_categories):
            weight = RISK_WEIGHTS.get(category, 0)
            if weight <= 0:
                continue
            facts = [f for f in cluster_facts if f.category == category]
            label = pick_label(facts)
            assert label is not None
            forced_severe |= category == C.SANCTIONS
            signals.append(
                {
                    "type": "ownership",
                    "category": category,
                    "direction": None,
                    "hops": 0,
                    "amount": None,
                    "asset": None,
                    "amountUSD": None,
                    "share": None,
                    "path": [],
                    "rule": "SANCTIONS_CLUSTER_OWNERSHIP" if category == C.SANCTIONS else "RISKY_CLUSTER_OWNERSHIP",
                    "entity": _entity(label),
                    "sources": _sources(facts),
                    "description": (
                        f"The address shares a {cluster.heuristic} cluster of {cluster.size} addresses "
                        f"attributed to {label.entity_name} ({category})."
                    ),
                }
            )
            raws.append(100.0 if category == C.SANCTIONS else weight * CLUSTER_OWNERSHIP_FACTOR)

    # Exposure: both directions, one hop at a time.
    walkers = [_Walker("in", target, source, limits), _Walker("out", target, source, limits)]
    budget = limits.max_edges
    truncated = False
    for hop in range(1, hops + 1):
        for walker in walkers:
            budget -= walker.step(min(limits.max_edges_per_hop, budget))
        newly = set().union(*(w.reached() for w in walkers))
        attribution = _attribute(source, newly)
        for walker in walkers:
            walker.settle(attribution)
        report(f"expand_hop_{hop}", 10 + round(70 * hop / hops))
        if budget <= 0 and hop < hops:
            truncated = True
            break
    truncated = truncated or any(w.truncated for w in walkers)

    report("exposure", 85)
    hits = [h for w in walkers for h in w.hits]
    totals = {w.walk: w.totals for w in walkers}
    peeling = detect_peeling(source, target)
    asset_ids = {h.asset_id for h in hits} | ({peeling[2]} if peeling else set())
    asset_facts = source.assets(asset_ids)
    tx_ids = {t for h in hits for t in h.path} | set(peeling[1] if peeling else ())

    # Aggregate hits: (category, walk, asset, direct?) -> amount, min hops, biggest hit, labels.
    groups: dict[tuple[str, Walk, int, bool], list[Hit]] = {}
    for hit in hits:
        groups.setdefault((hit.label.category, hit.walk, hit.asset_id, hit.hops == 1), []).append(hit)
    exposure: dict[tuple[str, Walk, int], dict[str, Any]] = {}
    for (category, walk, asset_id, direct), group in sorted(groups.items()):
        amount = sum((h.amount for h in group), Fraction(0))
        whole = math.floor(amount)
        fact = asset_facts[asset_id]
        row = exposure.setdefault(
            (category, walk, asset_id),
            {
                "category": category,
                "direction": walk,
                "asset": fact.symbol or fact.contract,
                "direct": "0",
                "indirect": "0",
                "directUSD": usd_value(0, fact),
                "indirectUSD": usd_value(0, fact),
                "minHops": min(h.hops for h in group),
            },
        )
        key = "direct" if direct else "indirect"
        row[key] = format_units(whole, fact.decimals)
        row[f"{key}USD"] = usd_value(whole, fact)
        row["minHops"] = min(row["minHops"], *(h.hops for h in group))
        weight = RISK_WEIGHTS.get(category, 0)
        if weight <= 0:
            continue
        hops_min = min(h.hops for h in group)
        total = totals[walk].get(asset_id) or 1
        share = float(amount / total)
        raw = exposure_weight(category, hops_min, share)
        biggest = max(group, key=lambda h: (h.amount, -h.hops, -h.address_id))
        forced_severe |= category == C.SANCTIONS and direct
        if category == C.SANCTIONS:
            rule = "SANCTIONS_DIRECT" if direct else "SANCTIONS_INDIRECT"
        else:
            rule = ("HIGH_RISK_" if weight >= 80 else "ELEVATED_RISK_") + ("DIRECT" if direct else "INDIRECT")
        way = "received from" if walk == "in" else "sent to"
        signals.append(
            {
                "type": "exposure",
                "category": category,
                "direction": walk,
                "hops": hops_min,
                "amount": format_units(whole, fact.decimals),
                "asset": fact.symbol or fact.contract,
                "amountUSD": usd_value(whole, fact),
                "share": round(share, 6),
                "path": list(biggest.path),
                "rule": rule,
                "entity": _entity(biggest.label),
                "counterparty": biggest.address_id,
                "sources": _sources(h.label for h in group),
                "description": (
                    f"{'Directly' if direct else f'Indirectly (from {hops_min} hops)'} {way} "
                    f"{len({h.address_id for h in group})} {category} address(es), "
                    f"{format_units(whole, fact.decimals)} {fact.symbol or 'units'} "
                    f"({share:.1%} of its {'inflow' if walk == 'in' else 'outflow'} in that asset)."
                ),
            }
        )
        raws.append(raw)
    if peeling is not None:
        steps, path, asset_id = peeling
        signals.append(
            {
                "type": "behaviour",
                "category": None,
                "direction": "out",
                "hops": steps,
                "amount": None,
                "asset": asset_facts[asset_id].symbol or asset_facts[asset_id].contract,
                "amountUSD": None,
                "share": None,
                "path": list(path),
                "rule": "PEELING_CHAIN",
                "entity": None,
                "sources": [],
                "description": (
                    f"Peeling chain of {steps} steps: each address forwards most of its funds to a fresh "
                    "address and shaves a small amount off, a common laundering pattern."
                ),
            }
        )
        raws.append(PEELING_WEIGHT)

    report("score", 92)
    for signal, raw in zip(signals, raws, strict=True):
        signal["severity"] = "severe" if signal["rule"] in _SEVERE_RULES else severity_of(raw)
    score, parts = apportion_score(raws)
    for signal, part in zip(signals, parts, strict=True):
        signal["contribution"] = part

    report("explain", 97)
    hashes = source.tx_hashes(tx_ids)
    counterparties = source.address_strings({s["counterparty"] for s in signals if "counterparty" in s})
    for signal in signals:
        signal["path"] = [hashes[t] for t in signal["path"]]
        if "counterparty" in signal:
            signal["counterparty"] = counterparties.get(signal["counterparty"])
        else:
            signal["counterparty"] = None
    signals.sort(
        key=lambda s: (-s["contribution"], s["rule"], s["category"] or "", s["direction"] or "", s["asset"] or "")
    )
    result.update(
        riskScore=score,
        riskLevel=risk_level(score, forced_severe),
        clusters=cluster_out,
        signals=signals,
        exposure=sorted(exposure.values(), key=lambda r: (r["direction"], r["category"], r["asset"])),
        rules=sorted({s["rule"] for s in signals}),
        truncated=truncated,
        stats={
            "addressesVisited": sum(len(w.visited) for w in walkers) - 1,
            "edgesRead": sum(w.edges_read for w in walkers),
        },
    )
    return result


_SEVERE_RULES = {"SANCTIONS_OWNERSHIP", "SANCTIONS_CLUSTER_OWNERSHIP", "SANCTIONS_DIRECT"}

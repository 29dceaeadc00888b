"""Explainable address risk analysis: exposure by entity category through up
to ``hops`` hops in both directions, ownership, behaviours, one score.

Model (documented in docs/PROTOCOL.md, "Compliance"):

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

Everything here is deterministic: same data and input, same result. The
walk lives in compliance.walk, the weights and levels in compliance.scoring;
this module turns what they find into signals, exposure rows and a score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from compliance.chains import STABLECOINS
from compliance.graph import AssetFact, LabelFact
from compliance.models import EntityCategory
from compliance.scoring import (
    CLUSTER_OWNERSHIP_FACTOR,
    PEELING_WEIGHT,
    RISK_WEIGHTS,
    SEVERE_RULES,
    apportion_score,
    exposure_rule,
    exposure_weight,
    pick_label,
    risk_level,
    severity_of,
)
from compliance.units import format_units
from compliance.walk import ClusterFact, GraphSource, Hit, Limits, Progress, Walk, Walker, attribute, detect_peeling

C = EntityCategory
MAX_SOURCES = 5
_STAGES_OF_AN_UNKNOWN_ADDRESS = (("labels", 10), ("exposure", 85), ("score", 92), ("explain", 97))

Peeling = tuple[int, tuple[int, ...], int]  # steps, transaction ids of the change, asset


def usd_value(base_units: int, asset: AssetFact) -> float | None:
    """Dollar stablecoins count at 1 USD; no other asset is priced here."""
    if asset.symbol not in STABLECOINS or asset.decimals is None:
        return None
    return float(round(Decimal(base_units).scaleb(-asset.decimals), 2))


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


@dataclass
class _Signals:
    """The signals found so far, each with its raw weight, in the order found."""

    items: list[dict[str, Any]] = field(default_factory=list)
    raws: list[float] = field(default_factory=list)
    forced_severe: bool = False  # sanctions ownership or direct sanctions exposure

    def add(self, signal: dict[str, Any], raw: float) -> None:
        self.items.append(signal)
        self.raws.append(raw)


def _signal(kind: str, rule: str, description: str, **fields: Any) -> dict[str, Any]:
    """A signal with the fields of its kind left at their empty values."""
    signal: dict[str, Any] = {
        "type": kind,
        "category": None,
        "direction": None,
        "hops": 0,
        "amount": None,
        "asset": None,
        "amountUSD": None,
        "share": None,
        "path": [],
        "rule": rule,
        "entity": None,
    }
    signal.update(fields)  # an exposure's counterparty comes after its entity
    signal["sources"] = signal.pop("sources", [])
    signal["description"] = description
    return signal


# --- ownership -------------------------------------------------------------------------------


def _own_signals(signals: _Signals, own: list[LabelFact]) -> None:
    """The address's own labels of risky categories, riskiest first."""
    for category in sorted({f.category for f in own}, key=lambda c: (-RISK_WEIGHTS.get(c, 0), c)):
        weight = RISK_WEIGHTS.get(category, 0)
        facts = [f for f in own if f.category == category]
        if weight <= 0:
            continue
        signals.forced_severe |= category == C.SANCTIONS
        label = pick_label(facts)
        assert label is not None
        rule = "SANCTIONS_OWNERSHIP" if category == C.SANCTIONS else "RISKY_OWNERSHIP"
        description = f"The address is attributed to {label.entity_name} ({category})."
        signal = _signal(
            "ownership", rule, description, category=category, entity=_entity(label), sources=_sources(facts)
        )
        signals.add(signal, float(weight))


def _cluster_signals(
    signals: _Signals, source: GraphSource, target: int, cluster: ClusterFact, own: list[LabelFact]
) -> dict[str, Any]:
    """Risky categories of the address's cluster not already owned by the
    address itself; returns the cluster as shown in the result."""
    members = source.cluster_labels(cluster.id, target)
    attributed = cluster.entity or pick_label(members)
    shown = {
        "id": cluster.id,
        "heuristic": cluster.heuristic,
        "size": cluster.size,
        "entity": None if attributed is None else attributed.entity_name,
        "category": None if attributed is None else attributed.category,
    }
    cluster_facts = [*members, *([cluster.entity] if cluster.entity else [])]
    own_categories = {f.category for f in own}
    for category in sorted({f.category for f in cluster_facts} - own_categories):
        weight = RISK_WEIGHTS.get(category, 0)
        if weight <= 0:
            continue
        facts = [f for f in cluster_facts if f.category == category]
        label = pick_label(facts)
        assert label is not None
        signals.forced_severe |= category == C.SANCTIONS
        sanctions = category == C.SANCTIONS
        rule = "SANCTIONS_CLUSTER_OWNERSHIP" if sanctions else "RISKY_CLUSTER_OWNERSHIP"
        description = (
            f"The address shares a {cluster.heuristic} cluster of {cluster.size} addresses "
            f"attributed to {label.entity_name} ({category})."
        )
        signal = _signal(
            "ownership", rule, description, category=category, entity=_entity(label), sources=_sources(facts)
        )
        signals.add(signal, 100.0 if sanctions else weight * CLUSTER_OWNERSHIP_FACTOR)
    return shown


# --- exposure --------------------------------------------------------------------------------


def _walk(source: GraphSource, target: int, hops: int, limits: Limits, report: Progress) -> tuple[list[Walker], bool]:
    """Both directions, one hop at a time, within the edge budget; returns
    the walkers and whether the walk was cut short."""
    walkers = [Walker("in", target, source, limits), Walker("out", target, source, limits)]
    budget = limits.max_edges
    truncated = False
    for hop in range(1, hops + 1):
        for walker in walkers:
            budget -= walker.step(min(limits.max_edges_per_hop, budget))
        newly = set().union(*(w.reached() for w in walkers))
        attribution = attribute(source, newly)
        for walker in walkers:
            walker.settle(attribution)
        report(f"expand_hop_{hop}", 10 + round(70 * hop / hops))
        if budget <= 0 and hop < hops:
            truncated = True
            break
    return walkers, truncated or any(w.truncated for w in walkers)


def _exposure_signal(
    category: str, walk: Walk, direct: bool, group: list[Hit], fact: AssetFact, share: float
) -> dict[str, Any]:
    whole = math.floor(sum((h.amount for h in group), Fraction(0)))
    hops_min = min(h.hops for h in group)
    biggest = max(group, key=lambda h: (h.amount, -h.hops, -h.address_id))
    way = "received from" if walk == "in" else "sent to"
    amount = format_units(whole, fact.decimals)
    description = (
        f"{'Directly' if direct else f'Indirectly (from {hops_min} hops)'} {way} "
        f"{len({h.address_id for h in group})} {category} address(es), "
        f"{amount} {fact.symbol or 'units'} "
        f"({share:.1%} of its {'inflow' if walk == 'in' else 'outflow'} in that asset)."
    )
    return _signal(
        "exposure",
        exposure_rule(category, direct),
        description,
        category=category,
        direction=walk,
        hops=hops_min,
        amount=amount,
        asset=fact.symbol or fact.contract,
        amountUSD=usd_value(whole, fact),
        share=round(share, 6),
        path=list(biggest.path),
        entity=_entity(biggest.label),
        counterparty=biggest.address_id,
        sources=_sources(h.label for h in group),
    )


def _exposure(
    signals: _Signals,
    hits: list[Hit],
    totals: dict[Walk, dict[int, int]],
    asset_facts: dict[int, AssetFact],
) -> list[dict[str, Any]]:
    """Hits aggregated by (category, direction, asset, direct?) into exposure
    rows, and a signal for each group of a risky category."""
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
        if RISK_WEIGHTS.get(category, 0) <= 0:
            continue
        share = float(amount / (totals[walk].get(asset_id) or 1))
        signals.forced_severe |= category == C.SANCTIONS and direct
        raw = exposure_weight(category, min(h.hops for h in group), share)
        signals.add(_exposure_signal(category, walk, direct, group, fact, share), raw)
    return sorted(exposure.values(), key=lambda r: (r["direction"], r["category"], r["asset"]))


def _peeling_signal(peeling: Peeling, asset_facts: dict[int, AssetFact]) -> dict[str, Any]:
    steps, path, asset_id = peeling
    description = (
        f"Peeling chain of {steps} steps: each address forwards most of its funds to a fresh "
        "address and shaves a small amount off, a common laundering pattern."
    )
    fact = asset_facts[asset_id]
    return _signal(
        "behaviour",
        "PEELING_CHAIN",
        description,
        direction="out",
        hops=steps,
        asset=fact.symbol or fact.contract,
        path=list(path),
    )


# --- score and explanation -------------------------------------------------------------------


def _score(signals: _Signals) -> int:
    """Each signal's severity and contribution; returns the score."""
    for signal, raw in zip(signals.items, signals.raws, strict=True):
        signal["severity"] = "severe" if signal["rule"] in SEVERE_RULES else severity_of(raw)
    score, parts = apportion_score(signals.raws)
    for signal, part in zip(signals.items, parts, strict=True):
        signal["contribution"] = part
    return score


def _explain(source: GraphSource, signals: list[dict[str, Any]], tx_ids: set[int]) -> None:
    """Transaction and counterparty ids become hashes and address strings."""
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


# --- the analysis ----------------------------------------------------------------------------


def _empty_result(chain: str, address: str, hops: int, known: bool) -> dict[str, Any]:
    return {
        "chain": chain,
        "address": address,
        "hops": hops,
        "known": known,
        "riskScore": 0,
        "riskLevel": "low",
        "clusters": [],
        "signals": [],
        "exposure": [],
        "rules": [],
        "truncated": False,
        "stats": {"addressesVisited": 0, "edgesRead": 0},
    }


def _no_progress(stage: str, pct: int) -> None:
    pass


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
    report = progress or _no_progress
    if not 1 <= hops <= 5:
        raise ValueError("hops must be 1-5")
    report("resolve", 5)
    result = _empty_result(chain, address, hops, known=target is not None)
    if target is None:
        for stage, pct in _STAGES_OF_AN_UNKNOWN_ADDRESS:
            report(stage, pct)
        return result

    report("labels", 10)
    signals = _Signals()
    own = source.labels([target]).get(target, [])
    cluster = source.clusters([target]).get(target)
    _own_signals(signals, own)
    clusters = [] if cluster is None else [_cluster_signals(signals, source, target, cluster, own)]

    walkers, truncated = _walk(source, target, hops, limits, report)
    report("exposure", 85)
    hits = [h for w in walkers for h in w.hits]
    peeling = detect_peeling(source, target)
    asset_facts = source.assets({h.asset_id for h in hits} | ({peeling[2]} if peeling else set()))
    tx_ids = {t for h in hits for t in h.path} | set(peeling[1] if peeling else ())
    exposure = _exposure(signals, hits, {w.walk: w.totals for w in walkers}, asset_facts)
    if peeling is not None:
        signals.add(_peeling_signal(peeling, asset_facts), PEELING_WEIGHT)

    report("score", 92)
    score = _score(signals)
    report("explain", 97)
    _explain(source, signals.items, tx_ids)
    result.update(
        riskScore=score,
        riskLevel=risk_level(score, signals.forced_severe),
        clusters=clusters,
        signals=signals.items,
        exposure=exposure,
        rules=sorted({s["rule"] for s in signals.items}),
        truncated=truncated,
        stats={
            "addressesVisited": sum(len(w.visited) for w in walkers) - 1,
            "edgesRead": sum(w.edges_read for w in walkers),
        },
    )
    return result

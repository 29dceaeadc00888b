"""How signals weigh in the risk score: category weights, hop and share
factors, severity levels and the score's apportioning among signals (the
model is described in compliance.analysis)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from compliance.graph import LabelFact
from compliance.models import EntityCategory

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
LEVELS = ((75, "severe"), (50, "high"), (25, "medium"), (0, "low"))
# Rules whose signals are severe whatever their weight.
SEVERE_RULES = {"SANCTIONS_OWNERSHIP", "SANCTIONS_CLUSTER_OWNERSHIP", "SANCTIONS_DIRECT"}


def pick_label(labels: Iterable[LabelFact]) -> LabelFact | None:
    """The attribution that matters most: riskiest category, then confidence."""
    ranked = sorted(labels, key=lambda f: (-RISK_WEIGHTS.get(f.category, 0), -f.confidence, f.entity_id, f.source))
    return ranked[0] if ranked else None


def share_factor(share: float) -> float:
    return 0.25 + 0.75 * math.sqrt(max(0.0, min(1.0, share)))


def exposure_weight(category: str, hops: int, share: float) -> float:
    """Raw weight of an exposure signal; direct sanctions exposure weighs 100."""
    if category == C.SANCTIONS and hops == 1:
        return 100.0
    return RISK_WEIGHTS.get(category, 0) * HOP_FACTORS.get(hops, 0.1) * share_factor(share)


def exposure_rule(category: str, direct: bool) -> str:
    if category == C.SANCTIONS:
        return "SANCTIONS_DIRECT" if direct else "SANCTIONS_INDIRECT"
    weight = RISK_WEIGHTS.get(category, 0)
    return ("HIGH_RISK_" if weight >= 80 else "ELEVATED_RISK_") + ("DIRECT" if direct else "INDIRECT")


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

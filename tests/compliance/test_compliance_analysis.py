"""The risk analysis on hand-built in-memory graphs: haircut arithmetic,
direct and indirect exposure, stopping at known services, ownership,
sanctions rules, peeling chains, bounds and the score's arithmetic."""

from __future__ import annotations

from compliance.analysis import analyse
from compliance.graph import AssetFact, Edge, LabelFact
from compliance.scoring import apportion_score, exposure_weight, share_factor
from compliance.units import format_units
from compliance.walk import Limits, MemoryGraph

TARGET = 1


def label(address: int, category: str, name: str | None = None, confidence: int = 90) -> LabelFact:
    return LabelFact(address, address, name or f"{category} {address}", category, None, "test", "v1", confidence)


class Builder:
    def __init__(self) -> None:
        self.edges: list[Edge] = []

    def send(self, sender: int | None, receiver: int | None, value: int, asset: int = 1) -> Builder:
        n = len(self.edges) + 1
        self.edges.append(Edge(n, 1000 + n, sender, receiver, asset, value, 1_000 * n))
        return self


def exposure(result: dict, direction: str, category: str) -> dict:
    rows = [r for r in result["exposure"] if r["direction"] == direction and r["category"] == category]
    assert len(rows) == 1, result["exposure"]
    return rows[0]


def signal(result: dict, rule: str, category: str | None = None) -> dict:
    rows = [s for s in result["signals"] if s["rule"] == rule and (category is None or s["category"] == category)]
    assert len(rows) == 1, [(s["rule"], s["category"]) for s in result["signals"]]
    return rows[0]


def run(source: MemoryGraph, hops: int = 2, **kwargs) -> dict:
    return analyse(source, TARGET, chain="test", address="target", hops=hops, **kwargs)


def haircut_graph() -> MemoryGraph:
    b = Builder()
    b.send(10, TARGET, 100)  # mixer, direct
    b.send(2, TARGET, 300)  # unlabelled; its own inflow: 50 darknet + 150 exchange
    b.send(11, 2, 50)
    b.send(12, 2, 150)
    b.send(TARGET, 3, 80)  # out: 20 of 80 reach a scam
    b.send(3, 14, 20)
    b.send(3, 4, 60)
    return MemoryGraph(
        b.edges,
        label_map={
            10: [label(10, "mixer")],
            11: [label(11, "darknet_market")],
            12: [label(12, "exchange")],
            14: [label(14, "scam")],
        },
    )


def test_direct_and_indirect_exposure_are_split_with_proportional_haircut():
    result = run(haircut_graph())
    assert exposure(result, "in", "mixer") | {} == {
        "category": "mixer",
        "direction": "in",
        "asset": "A1",
        "direct": "100",
        "indirect": "0",
        "directUSD": None,
        "indirectUSD": None,
        "minHops": 1,
    }
    assert exposure(result, "in", "darknet_market")["indirect"] == "75"  # 300 * 50/200
    assert exposure(result, "in", "exchange")["indirect"] == "225"  # 300 * 150/200
    assert exposure(result, "out", "scam")["indirect"] == "20"  # 80 * 20/80
    darknet = signal(result, "HIGH_RISK_INDIRECT", "darknet_market")
    assert darknet["hops"] == 2 and darknet["direction"] == "in"
    assert darknet["path"] == ["tx1002", "tx1003"]  # hop by hop from the target
    assert darknet["share"] == 75 / 400
    assert signal(result, "HIGH_RISK_DIRECT", "mixer")["path"] == ["tx1001"]
    assert {s["category"] for s in result["signals"]} == {"mixer", "darknet_market", "scam"}  # exchanges are licit


def test_haircut_amounts_are_exact_and_rounded_down_only_when_shown():
    b = Builder()
    b.send(2, TARGET, 10**22 + 7)  # beyond 64 bits and floats' precision
    b.send(11, 2, 1)
    b.send(12, 2, 2)
    source = MemoryGraph(
        b.edges,
        label_map={11: [label(11, "scam")], 12: [label(12, "exchange")]},
        asset_map={1: AssetFact(1, "ethereum", "ETH", "", 18)},
    )
    result = run(source)
    # (10**22 + 7) / 3 = 3333333333333333333335.666..., rounded down to a wei
    assert exposure(result, "in", "scam")["indirect"] == "3333.333333333333333335"
    assert exposure(result, "in", "exchange")["indirect"] == "6666.666666666666666671"


def test_the_walk_stops_at_known_services_and_never_revisits():
    b = Builder()
    b.send(12, TARGET, 100)  # exchange: the walk stops there
    b.send(10, 12, 1000)  # a mixer behind the exchange is not reached
    b.send(TARGET, 2, 40)
    b.send(2, TARGET, 40)  # a cycle back to the target adds nothing
    source = MemoryGraph(b.edges, label_map={12: [label(12, "exchange")], 10: [label(10, "mixer")]})
    result = run(source, hops=3)
    assert [r["category"] for r in result["exposure"]] == ["exchange"]
    assert result["riskScore"] == 0 and result["riskLevel"] == "low" and result["signals"] == []


def test_hops_limit_how_far_exposure_is_seen():
    b = Builder()
    b.send(2, TARGET, 100).send(3, 2, 100).send(10, 3, 100)
    source = MemoryGraph(b.edges, label_map={10: [label(10, "ransomware")]})
    assert run(source, hops=2)["exposure"] == []
    assert exposure(run(source, hops=3), "in", "ransomware") | {"asset": None} == {
        "category": "ransomware",
        "direction": "in",
        "asset": None,
        "direct": "0",
        "indirect": "100",
        "directUSD": None,
        "indirectUSD": None,
        "minHops": 3,
    }


def test_ownership_of_a_sanctions_label_is_severe_whatever_the_graph():
    source = MemoryGraph([], label_map={TARGET: [label(TARGET, "sanctions", "OFAC SDN list (ETH)", 100)]})
    result = run(source)
    assert result["riskLevel"] == "severe" and result["riskScore"] == 100
    owned = signal(result, "SANCTIONS_OWNERSHIP")
    assert owned["hops"] == 0 and owned["severity"] == "severe" and owned["contribution"] == 100
    assert owned["sources"] == [{"source": "test", "version": "v1", "confidence": 100}]


def test_any_direct_sanctions_exposure_is_severe_however_small():
    b = Builder()
    b.send(20, TARGET, 1)
    b.send(12, TARGET, 10**12)
    source = MemoryGraph(b.edges, label_map={20: [label(20, "sanctions")], 12: [label(12, "exchange")]})
    result = run(source)
    assert result["riskLevel"] == "severe"
    assert signal(result, "SANCTIONS_DIRECT")["severity"] == "severe"


def test_indirect_sanctions_exposure_is_not_severe_by_itself():
    b = Builder()
    b.send(2, TARGET, 100).send(20, 2, 1).send(12, 2, 99)
    source = MemoryGraph(b.edges, label_map={20: [label(20, "sanctions")], 12: [label(12, "exchange")]})
    result = run(source)
    assert result["rules"] == ["SANCTIONS_INDIRECT"]
    assert result["riskLevel"] != "severe"


def test_a_cluster_attributed_to_sanctions_is_ownership():
    from compliance.walk import ClusterFact

    cluster = ClusterFact(7, "multi_input", 3, None)
    source = MemoryGraph(
        [],
        label_map={5: [label(5, "sanctions")]},
        cluster_map={TARGET: cluster, 5: cluster, 6: cluster},
    )
    result = run(source)
    assert result["riskLevel"] == "severe"
    assert result["clusters"] == [
        {"id": 7, "heuristic": "multi_input", "size": 3, "entity": "sanctions 5", "category": "sanctions"}
    ]
    assert signal(result, "SANCTIONS_CLUSTER_OWNERSHIP")["type"] == "ownership"


def test_peeling_chain_is_detected_as_a_behaviour():
    b = Builder()
    b.send(TARGET, 2, 90).send(TARGET, 50, 10)
    b.send(2, 3, 80).send(2, 51, 10)
    b.send(3, 4, 72).send(3, 52, 8)
    b.send(4, 5, 65).send(4, 53, 7)
    result = run(MemoryGraph(b.edges))
    peel = signal(result, "PEELING_CHAIN")
    assert peel["type"] == "behaviour" and peel["hops"] == 4
    assert peel["path"] == ["tx1001", "tx1003", "tx1005", "tx1007"]


def test_contributions_add_up_to_the_score_and_levels_follow_it():
    result = run(haircut_graph())
    assert sum(s["contribution"] for s in result["signals"]) == result["riskScore"]
    assert 0 <= result["riskScore"] <= 100
    assert result["riskLevel"] == "severe"  # mixer direct 50 + darknet 31 + scam 32 > 75
    assert result["signals"] == sorted(result["signals"], key=lambda s: -s["contribution"])


def test_apportion_is_exact_and_capped():
    assert apportion_score([]) == (0, [])
    assert apportion_score([10.4, 10.4, 10.4]) == (31, [11, 10, 10])
    score, parts = apportion_score([100.0, 50.0, 30.0])
    assert score == 100 and sum(parts) == 100
    assert exposure_weight("sanctions", 1, 1e-9) == 100.0
    assert share_factor(0) == 0.25 and share_factor(1) == 1.0


def test_a_huge_neighbourhood_is_bounded_and_says_so():
    b = Builder()
    for n in range(500):
        b.send(100 + n, TARGET, 1)
    result = run(MemoryGraph(b.edges), limits=Limits(max_edges_per_hop=50, max_edges=80, max_frontier=10))
    assert result["truncated"] is True
    assert result["stats"]["edgesRead"] <= 80


def test_progress_stages_are_named_and_never_go_back():
    seen: list[tuple[str, int]] = []
    run(haircut_graph(), hops=3, progress=lambda stage, pct: seen.append((stage, pct)))
    stages = [s for s, _ in seen]
    assert stages == [
        "resolve",
        "labels",
        "expand_hop_1",
        "expand_hop_2",
        "expand_hop_3",
        "exposure",
        "score",
        "explain",
    ]
    pcts = [p for _, p in seen]
    assert pcts == sorted(pcts)


def test_same_graph_same_result():
    assert run(haircut_graph(), hops=4) == run(haircut_graph(), hops=4)


def test_units_are_plain_decimal_strings():
    assert format_units(1500000000000000000, 18) == "1.5"
    assert format_units(0, 18) == "0"
    assert format_units(123, None) == "123"
    assert format_units(10**30, 6) == "1000000000000000000000000"

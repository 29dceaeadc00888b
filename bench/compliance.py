"""Compliance benchmark: address analysis over a real WebSocket on the demo
graph (time to ``address_analysis_started``, analysis time at 2 and 4 hops),
``address_transactions`` page latency, and the graph expansion against
networkx doing the same traversal in the same run.

    .venv/bin/python bench/compliance.py [--stack embedded|scaled|both]
        [--per-kind 8] [--hops 2,4] [--pages 4]

Per stack, on a fresh migrated database seeded by ``manage.py seed_demo``
(devtools.servers.server_environment: the OFAC lists and the demo graph of
100,000 transfers with real OFAC addresses planted in it), the parent
re-invokes this script as ``--worker STACK`` with the stack's environment;
the worker prints one ``result {...}`` line.

- **Sample**: per hop setting the same addresses, ``--per-kind`` of each kind
  over both chains: planted OFAC addresses, their unlabelled direct
  counterparties (OFAC-adjacent), exchange addresses (hot wallets and
  deposit addresses), and ordinary unlabelled addresses. Chosen with a fixed
  seed, so every run and stack analyses the same addresses.
- **WebSocket**: a real daphne server (as ``make run``) and, on the scaled
  stack, one ``manage.py db_worker`` running the jobs (Django Tasks); one
  connection, requests one at a time. *started*: from sending
  ``address_analysis`` to ``address_analysis_started``; *analysis*: from
  sending to ``address_analysis_completed``; *job*: the server's
  ``durationMs``. Throttles are raised out of the way; analyses are free.
- **Pages**: ``address_transactions`` (limit 50) for each sampled address,
  following ``nextCursor`` up to ``--pages`` pages.
- **Expansion vs networkx**: in the worker process, without the server,
  ``compliance.jobs.analyse_address`` per sampled address and hop setting,
  timing its expansion (from the ``labels`` stage to the last
  ``expand_hop_<n>`` stage: ownership lookups and the hop-by-hop walk with
  the attribution of each hop). Baseline: the valued transfers of the chain
  loaded once into a networkx DiGraph (load time reported apart), then a
  breadth-first search to the same number of hops backwards and forwards
  from the address, not expanding attributed addresses, as the walk does.
  Ratio = our expansion / networkx BFS, per address, p50 and p95.

Client, server, worker, PostgreSQL and Redis share the machine; see
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import add_service_arguments, percentile  # noqa: E402
from devtools.servers import DaphneProcess, DbWorkerProcess, server_environment  # noqa: E402

SECRET = uuid.uuid4().hex + uuid.uuid4().hex
RESULT_PREFIX = "result "
USER = "bench_compliance"
REQUEST_TIMEOUT = 120.0
STACK_LABELS = {"embedded": "SQLite, in-memory layer, in-process jobs", "scaled": "PostgreSQL, Redis, db_worker"}
KINDS = ("ofac", "ofac_adjacent", "exchange", "ordinary")
STARTED_TARGET_MS = 200.0
P95_TARGET_MS = {2: 2_000.0, 4: 10_000.0}


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values, default=float("nan")),
    }


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# --- worker: one stack, Django configured from the inherited environment ----


def pick_sample(per_kind: int) -> list[dict[str, Any]]:
    """``per_kind`` addresses of each kind, spread over both chains."""
    from django.db.models import Q

    from compliance.models import Address, AddressLabel, EntityCategory, Transfer

    rng = random.Random(20261123)
    active = AddressLabel.objects.filter(delisted_at=None)
    labelled = set(active.values_list("address_id", flat=True))
    with_transfers = Q(transfers_out__isnull=False) | Q(transfers_in__isnull=False)
    rows: dict[str, list[tuple[int, str, str]]] = {}

    def choose(kind: str, ids: list[int]) -> None:
        found = (
            Address.objects.filter(id__in=ids)
            .filter(with_transfers)
            .distinct()
            .order_by("id")
            .values_list("id", "chain__code", "address")
        )
        rows[kind] = list(found)

    ofac = sorted(set(active.filter(source__startswith="ofac:").values_list("address_id", flat=True)))
    choose("ofac", ofac)
    planted = [pk for pk, *_ in rows["ofac"]]
    neighbours = set(Transfer.objects.filter(from_address_id__in=planted).values_list("to_address_id", flat=True))
    neighbours |= set(Transfer.objects.filter(to_address_id__in=planted).values_list("from_address_id", flat=True))
    choose("ofac_adjacent", sorted(a for a in neighbours if a is not None and a not in labelled))
    exchanges = active.filter(entity__category=EntityCategory.EXCHANGE)
    hot = sorted(set(exchanges.exclude(note="deposit address").values_list("address_id", flat=True)))
    deposit = sorted(set(exchanges.filter(note="deposit address").values_list("address_id", flat=True)))
    choose("exchange_hot", hot)
    choose("exchange_deposit", rng.sample(deposit, min(len(deposit), 2000)))
    ordinary = list(
        Address.objects.filter(chain__code__in=("ethereum", "bitcoin"))
        .exclude(id__in=labelled)
        .order_by("id")
        .values_list("id", flat=True)
    )
    choose("ordinary", rng.sample(ordinary, min(len(ordinary), 2000)))

    def spread(candidates: list[tuple[int, str, str]], count: int) -> list[tuple[int, str, str]]:
        by_chain: dict[str, list[tuple[int, str, str]]] = {}
        for row in candidates:
            by_chain.setdefault(row[1], []).append(row)
        picked: list[tuple[int, str, str]] = []
        pools = [rng.sample(v, len(v)) for _, v in sorted(by_chain.items())]
        while len(picked) < count and any(pools):
            for pool in pools:
                if pool and len(picked) < count:
                    picked.append(pool.pop())
        return picked

    sample: list[dict[str, Any]] = []
    exchange_picks = spread(rows["exchange_hot"], max(1, per_kind // 3))
    exchange_picks += spread(rows["exchange_deposit"], per_kind - len(exchange_picks))
    for kind, picks in (
        ("ofac", spread(rows["ofac"], per_kind)),
        ("ofac_adjacent", spread(rows["ofac_adjacent"], per_kind)),
        ("exchange", exchange_picks),
        ("ordinary", spread(rows["ordinary"], per_kind)),
    ):
        sample.extend({"kind": kind, "id": pk, "chain": chain, "address": address} for pk, chain, address in picks)
    return sample


def expansion_vs_networkx(sample: list[dict[str, Any]], hop_settings: list[int]) -> dict[str, Any]:
    import networkx as nx
    from django.db.models import Q
    from django.utils import timezone

    from compliance.jobs import analyse_address
    from compliance.models import AddressLabel, Cluster, Transfer

    graphs: dict[str, Any] = {}
    load_seconds: dict[str, float] = {}
    for chain in sorted({s["chain"] for s in sample}):
        started = time.perf_counter()
        graph = nx.DiGraph()
        graph.add_edges_from(
            Transfer.objects.filter(
                tx__chain__code=chain, value__gte=1, from_address__isnull=False, to_address__isnull=False
            ).values_list("from_address_id", "to_address_id")
        )
        graphs[chain] = graph
        load_seconds[chain] = time.perf_counter() - started
    now = timezone.now()
    attributed = set(
        AddressLabel.objects.filter(listed_at__lte=now)
        .filter(Q(delisted_at__isnull=True) | Q(delisted_at__gt=now))
        .values_list("address_id", flat=True)
    )
    attributed_clusters = set(Cluster.objects.filter(entity__isnull=False).values_list("id", flat=True))
    if attributed_clusters:
        from compliance.models import Address

        attributed |= set(Address.objects.filter(cluster_id__in=attributed_clusters).values_list("id", flat=True))

    def bfs(graph: Any, source: int, hops: int) -> int:
        reached = {source}
        for neighbours in (graph.predecessors, graph.successors):

            def step(node: int, neighbours: Any = neighbours) -> Any:
                return () if node != source and node in attributed else neighbours(node)

            if source in graph:
                reached.update(v for _, v in nx.generic_bfs_edges(graph, source, neighbors=step, depth_limit=hops))
        return len(reached) - 1

    rows: list[dict[str, Any]] = []
    for hops in hop_settings:
        for item in sample:
            marks: dict[str, float] = {}

            def progress(stage: str, pct: int, marks: dict[str, float] = marks) -> None:
                marks[stage] = time.perf_counter()

            started = time.perf_counter()
            result = analyse_address(item["chain"], item["address"], hops, progress=progress)
            total = time.perf_counter() - started
            last_hop = max((s for s in marks if s.startswith("expand_hop_")), key=lambda s: int(s.rsplit("_", 1)[1]))
            ours = marks[last_hop] - marks["labels"]
            started = time.perf_counter()
            reached = bfs(graphs[item["chain"]], item["id"], hops)
            theirs = time.perf_counter() - started
            rows.append(
                {
                    "hops": hops,
                    "kind": item["kind"],
                    "ours_ms": ours * 1000,
                    "analysis_ms": total * 1000,
                    "networkx_ms": theirs * 1000,
                    "ours_visited": result["stats"]["addressesVisited"],
                    "networkx_reached": reached,
                    "truncated": result["truncated"],
                }
            )
    out: dict[str, Any] = {
        "load_seconds": load_seconds,
        "graph_edges": {c: g.number_of_edges() for c, g in graphs.items()},
        "graph_nodes": {c: g.number_of_nodes() for c, g in graphs.items()},
        "by_hops": {},
    }
    for hops in hop_settings:
        mine = [r for r in rows if r["hops"] == hops]
        out["by_hops"][str(hops)] = {
            "ours_ms": summary([r["ours_ms"] for r in mine]),
            "analysis_ms": summary([r["analysis_ms"] for r in mine]),
            "networkx_ms": summary([r["networkx_ms"] for r in mine]),
            "ratio": summary([r["ours_ms"] / max(r["networkx_ms"], 1e-3) for r in mine]),
            "ours_visited_p50": percentile([float(r["ours_visited"]) for r in mine], 50),
            "networkx_reached_p50": percentile([float(r["networkx_reached"]) for r in mine], 50),
            "truncated": sum(r["truncated"] for r in mine),
        }
    return out


async def over_websocket(url: str, sample: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    import jwt
    import websockets

    now = int(time.time())
    token = jwt.encode(
        {"sub": USER, "iat": now, "exp": now + 7200}, os.environ["LEDGERCORE_DEV_JWT_SECRET"], algorithm="HS256"
    )
    ws = await websockets.connect(f"{url}/ws?token={token}", open_timeout=60, max_size=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert hello["event"] == "connected", hello
    counter = 0

    async def request(event: str, data: dict[str, Any], until: set[str]) -> tuple[dict[str, float], dict[str, Any]]:
        nonlocal counter
        counter += 1
        request_id = f"r{counter}"
        sent = time.perf_counter()
        await ws.send(json.dumps({"event": event, "data": data, "id": request_id}))
        marks: dict[str, float] = {}
        deadline = sent + REQUEST_TIMEOUT
        while True:
            raw = await asyncio.wait_for(ws.recv(), max(deadline - time.perf_counter(), 0.01))
            frame = json.loads(raw)
            if frame.get("id") != request_id:
                continue
            marks.setdefault(frame["event"], (time.perf_counter() - sent) * 1000)
            if frame["event"] in until or frame["event"].endswith("error"):
                return marks, frame

    results: dict[str, Any] = {"analysis": {}, "errors": []}
    warm = sample[0]
    for hops in (1, 2):  # uncounted: first use of each code path in the server
        await request(
            "address_analysis",
            {"chain": warm["chain"], "address": warm["address"], "hops": hops},
            {"address_analysis_completed"},
        )
    for hops in args.hop_settings:
        started_ms: list[float] = []
        total_ms: list[float] = []
        job_ms: list[float] = []
        per_kind: dict[str, list[float]] = {k: [] for k in KINDS}
        log(f"analysis at {hops} hops: {len(sample)} addresses")
        for item in sample:
            marks, frame = await request(
                "address_analysis",
                {"chain": item["chain"], "address": item["address"], "hops": hops},
                {"address_analysis_completed"},
            )
            if frame["event"] != "address_analysis_completed" or "address_analysis_response" not in marks:
                results["errors"].append({"address": item["address"], "hops": hops, "frame": frame})
                continue
            started_ms.append(marks["address_analysis_started"])
            total_ms.append(marks["address_analysis_completed"])
            job_ms.append(float(frame["data"]["durationMs"]))
            per_kind[item["kind"]].append(marks["address_analysis_completed"])
        results["analysis"][str(hops)] = {
            "started_ms": summary(started_ms),
            "total_ms": summary(total_ms),
            "job_ms": summary(job_ms),
            "by_kind_p95_ms": {k: percentile(v, 95) for k, v in per_kind.items()},
        }
    page_ms: list[float] = []
    first_page_ms: list[float] = []
    rows = 0
    for item in sample:
        cursor = None
        for page in range(args.pages):
            data: dict[str, Any] = {"chain": item["chain"], "address": item["address"], "limit": 50}
            if cursor:
                data["cursor"] = cursor
            marks, frame = await request("address_transactions", data, {"address_transactions_response"})
            if frame["event"] != "address_transactions_response":
                results["errors"].append({"address": item["address"], "page": page, "frame": frame})
                break
            elapsed = marks["address_transactions_response"]
            page_ms.append(elapsed)
            if page == 0:
                first_page_ms.append(elapsed)
            rows += len(frame["data"]["transactions"])
            cursor = frame["data"]["nextCursor"]
            if not cursor:
                break
    results["pages"] = {"all_ms": summary(page_ms), "first_ms": summary(first_page_ms), "rows": rows}
    await ws.close()
    return results


def job_outcomes() -> dict[str, Any]:
    from compliance.models import AnalysisJob

    levels: dict[str, int] = {}
    truncated = 0
    for result in AnalysisJob.objects.filter(status="completed").values_list("result", flat=True):
        if not result:
            continue
        levels[result["riskLevel"]] = levels.get(result["riskLevel"], 0) + 1
        truncated += bool(result["truncated"])
    return {"levels": levels, "truncated": truncated}


def worker(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ledgercore.settings")
    import django

    django.setup()
    from django.db import connections

    from accounts.services import get_or_create_user
    from compliance.models import Transfer

    results: dict[str, Any] = {"transfers": Transfer.objects.count()}
    sample = pick_sample(args.per_kind)
    results["sample"] = {k: sum(s["kind"] == k for s in sample) for k in KINDS}
    results["sample_chains"] = {c: sum(s["chain"] == c for s in sample) for c in ("ethereum", "bitcoin")}
    log(f"{stack}: {results['transfers']:,} transfers; sample {results['sample']}")
    log(f"{stack}: expansion vs networkx, in process")
    results["expansion"] = expansion_vs_networkx(sample, args.hop_settings)
    get_or_create_user(USER)
    connections.close_all()

    var = Path(os.environ["LEDGERCORE_VAR_DIR"])
    runner = DbWorkerProcess(dict(os.environ), var / "db_worker.log").start() if stack == "scaled" else None
    server = DaphneProcess(dict(os.environ), var / "daphne.log").start()
    try:
        results["websocket"] = asyncio.run(over_websocket(server.url, sample, args))
    except Exception:
        print("--- server log ---", *server.logs().splitlines()[-60:], sep="\n", file=sys.stderr)
        if runner:
            print("--- db_worker log ---", *runner.logs().splitlines()[-60:], sep="\n", file=sys.stderr)
        raise
    finally:
        server.stop()
        if runner:
            runner.stop()
    results["outcomes"] = job_outcomes()
    return results


# --- parent: environments, worker processes, report --------------------------


def run_stack(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {
            "dev_secret": SECRET,
            "LOG_LEVEL": "WARNING",
            "LEDGERCORE_THROTTLE_RATES": "connection=100000/s,user=100000/s,expensive=100000/min",
            "LEDGERCORE_PRICES": "",
        }
        if stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcbench")
        log(f"{stack}: preparing a fresh database (migrate, seed_demo)")
        started = time.perf_counter()
        with server_environment(Path(tmp), **kwargs) as env:
            seeded = time.perf_counter() - started
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", stack]
            command += ["--per-kind", str(args.per_kind), "--hops", args.hops, "--pages", str(args.pages)]
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
            if done.returncode != 0 or not lines:
                raise RuntimeError(f"{stack} worker failed (exit {done.returncode}):\n{done.stdout}")
            results: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
            results["prepare_seconds"] = seeded
            return results


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def report(stack: str, r: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n== {stack} stack ({STACK_LABELS[stack]}) ==")
    print(
        f"demo graph: {r['transfers']:,} transfers; sample per hop setting: "
        + ", ".join(f"{v} {k}" for k, v in r["sample"].items())
        + f" ({r['sample_chains']['ethereum']} ethereum, {r['sample_chains']['bitcoin']} bitcoin)"
    )
    ws = r["websocket"]
    print(f"{'over the WebSocket':40}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'target':>10}{'':>8}")
    for hops in args.hop_settings:
        a = ws["analysis"][str(hops)]
        s, t, j = a["started_ms"], a["total_ms"], a["job_ms"]
        target = P95_TARGET_MS.get(hops)
        print(
            f"{f'{hops} hops: to address_analysis_started':40}{s['n']:>5}{s['p50']:>10.1f}{s['p95']:>10.1f}"
            f"{s['max']:>10.1f}{STARTED_TARGET_MS:>10.0f}{verdict(s['p95'], STARTED_TARGET_MS):>8}"
        )
        print(
            f"{f'{hops} hops: to address_analysis_completed':40}{t['n']:>5}{t['p50']:>10.1f}{t['p95']:>10.1f}"
            f"{t['max']:>10.1f}{(target or float('nan')):>10.0f}{verdict(t['p95'], target or float('inf')):>8}"
        )
        print(f"{f'{hops} hops: job durationMs':40}{j['n']:>5}{j['p50']:>10.1f}{j['p95']:>10.1f}{j['max']:>10.1f}")
        kinds = ", ".join(f"{k} {v:.0f}" for k, v in a["by_kind_p95_ms"].items())
        print(f"{'':4}p95 by kind (ms): {kinds}")
    p = ws["pages"]
    for key, label in (("first_ms", "address_transactions, first page"), ("all_ms", "address_transactions, any page")):
        v = p[key]
        print(f"{label:40}{v['n']:>5}{v['p50']:>10.1f}{v['p95']:>10.1f}{v['max']:>10.1f}")
    e = r["expansion"]
    loads = ", ".join(
        f"{c} {e['graph_edges'][c]:,} edges / {e['graph_nodes'][c]:,} nodes in {s:.2f} s"
        for c, s in e["load_seconds"].items()
    )
    print(f"expansion vs networkx (in process; networkx load, once: {loads})")
    print(f"{'':40}{'ours p50':>10}{'ours p95':>10}{'nx p50':>10}{'nx p95':>10}{'ratio p50':>10}{'ratio p95':>10}")
    for hops in args.hop_settings:
        h = e["by_hops"][str(hops)]
        print(
            f"{f'{hops} hops (visited {h["ours_visited_p50"]:.0f} vs {h["networkx_reached_p50"]:.0f})':40}"
            f"{h['ours_ms']['p50']:>10.1f}{h['ours_ms']['p95']:>10.1f}{h['networkx_ms']['p50']:>10.2f}"
            f"{h['networkx_ms']['p95']:>10.2f}{h['ratio']['p50']:>10.1f}{h['ratio']['p95']:>10.1f}"
        )
    notes = [f"risk levels {r['outcomes']['levels']}", f"truncated {r['outcomes']['truncated']}"]
    notes.append(f"prepare {r['prepare_seconds']:.0f} s")
    if ws["errors"]:
        notes.append(f"errors {len(ws['errors'])}: {ws['errors'][0]}")
    print("  " + "; ".join(notes))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", choices=["embedded", "scaled", "both"], default="both")
    p.add_argument("--per-kind", type=int, default=8, help="addresses of each of the 4 kinds per hop setting")
    p.add_argument("--hops", default="2,4", help="hop settings, comma-separated")
    p.add_argument("--pages", type=int, default=4, help="address_transactions pages followed per address")
    add_service_arguments(p)
    return p


def main() -> None:
    args = parser().parse_args()
    args.hop_settings = [int(h) for h in args.hops.split(",")]
    if args.worker:
        results = worker(args.worker, args)
        print(RESULT_PREFIX + json.dumps(results), flush=True)
        return
    stacks = ["embedded", "scaled"] if args.stack == "both" else [args.stack]
    print(
        f"bench/compliance.py: demo graph (seed_demo), {4 * args.per_kind} addresses per hop setting "
        f"({args.per_kind} per kind), hops {args.hops}, up to {args.pages} address_transactions pages each; "
        "baseline networkx BFS over the same edges"
    )
    everything: dict[str, Any] = {}
    for stack in stacks:
        everything[stack] = run_stack(stack, args)
        report(stack, everything[stack], args)
    settings = {"per_kind": args.per_kind, "hops": args.hop_settings, "pages": args.pages}
    targets = {"started_ms": STARTED_TARGET_MS, "p95_ms": P95_TARGET_MS}
    print("json " + json.dumps({**settings, "targets": targets, "stacks": everything}))


if __name__ == "__main__":
    main()

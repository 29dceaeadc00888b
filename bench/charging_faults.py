"""Charging under SIGKILL: charged requests while the server is killed at
random moments, then the ledger checked.

    .venv/bin/python bench/charging_faults.py [--stack embedded|scaled|both]
        [--requests 500] [--clients 4] [--heartbeat 5] [--dead 30] [--seed 7]
        [--scenario kill|frozen|both]

Per stack, on a fresh migrated database (devtools.servers.migrated_environment;
the scaled stack on the PostgreSQL and Redis of --postgres/--redis, of which
only a new database and a key prefix are used): users with credits, every
``query`` priced 1 credit; --clients WebSocket clients send queries one
after the other (a cheap one and a 4-way self join of the user's ledger,
alternately; the same work however long the ledger grows) to one daphne process, which is killed with SIGKILL after a
random 8 to 20 more requests (at a random moment within 0.3 s) and started
again, until --requests have been sent. Then, with the last process
running, it waits until no hold is pending and prints:

- kills, requests sent, queries completed as clients saw them;
- holds left pending by each kill (owned by the killed process);
- seconds from the last kill until every hold was settled (with the
  default liveness settings, --heartbeat 5 --dead 30, this is the time a
  dead process's holds wait);
- settlement problems (a hold captured whose query did not complete, or
  released whose query did, or pending) and ``reconcile_ledger``'s failing
  accounts: both must be 0.

A restarted server on the same machine settles its predecessor's holds as
soon as it starts (the PID is gone). The heartbeat path is measured apart
(``frozen``): two servers on one database, a charged query running on the
first, which is then frozen (SIGSTOP: alive, but silent, as a hung or cut
off machine); the seconds until the second one releases the hold, then the
first is resumed (SIGCONT) and finishes its query: the hold must stay
released once, never captured too.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import add_service_arguments  # noqa: E402
from devtools.chargefaults import KillRun, dev_token, final_of, grant, hello, server_rows, settlement_problems  # noqa: E402
from devtools.servers import DaphneProcess, manage, migrated_environment  # noqa: E402

SECRET = "bench-charging-faults-secret-at-least-32-bytes"
FAST_SQL = "SELECT count(*) FROM credit_entries"
# A 4-way self join of the user's first 12 ledger entries: the same work
# however many entries the run adds.
MEDIUM_SQL = (
    "SELECT count(*) FROM credit_entries a, credit_entries b, credit_entries c, credit_entries d "
    "WHERE a.sequence <= 12 AND b.sequence <= 12 AND c.sequence <= 12 AND d.sequence <= 12"
)


def run_stack(stack: str, args: argparse.Namespace) -> dict[str, object]:
    extra = {
        "LEDGERCORE_PRICES": "query=1",
        "LEDGERCORE_THROTTLE_RATES": "connection=1000/s,user=1000/s,expensive=1000/s",
        "LEDGERCORE_PROCESS_HEARTBEAT_SECONDS": str(args.heartbeat),
        "LEDGERCORE_PROCESS_DEAD_SECONDS": str(args.dead),
        "LOG_LEVEL": "WARNING",
    }
    with tempfile.TemporaryDirectory(prefix="lc-bench-charging-") as tmp:
        tmp_path = Path(tmp)
        services = {"postgres_url": args.postgres, "redis_url": args.redis} if stack == "scaled" else {}
        with migrated_environment(tmp_path, dev_secret=SECRET, redis_prefix="lcbench", **services, **extra) as env:  # type: ignore[arg-type]
            users = [f"bench_killed_{index}" for index in range(args.clients)]
            grant(env, users, grants=12, amount=(args.requests // args.clients + 10) * 2)
            run = KillRun(env, tmp_path, users, requests=args.requests, seed=args.seed)
            started = time.monotonic()
            settled_after = run.run([FAST_SQL, MEDIUM_SQL], wait=args.dead * 3 + 30)
            pending = server_rows(env, "SELECT count(*) FROM credits_hold WHERE status = 'pending'")[0][0]
            holds = dict(server_rows(env, "SELECT status, count(*) FROM credits_hold GROUP BY status"))
            problems = settlement_problems(env)
            try:
                summary = manage(env, "reconcile_ledger").strip().splitlines()[-1]
            except RuntimeError as exc:
                summary = str(exc).strip().splitlines()[-1]
            failing = re.search(r"(\d+) (?:failing|of)", summary)
            return {
                "stack": stack,
                "requests": run.sent,
                "kills": run.kills,
                "completed_seen": len(run.completed),
                "holds": holds,
                "orphaned_per_kill": run.orphaned,
                "pending_at_end": pending,
                "seconds_last_kill_to_settled": round(settled_after, 1),
                "settlement_problems": len(problems),
                "reconcile": summary,
                "reconcile_failing": int(failing.group(1)) if failing else None,
                "wall_seconds": round(time.monotonic() - started, 1),
            }


def frozen_peer(stack: str, args: argparse.Namespace) -> dict[str, object]:
    extra = {
        "LEDGERCORE_PRICES": "query=1",
        "LEDGERCORE_PROCESS_HEARTBEAT_SECONDS": str(args.heartbeat),
        "LEDGERCORE_PROCESS_DEAD_SECONDS": str(args.dead),
        "LOG_LEVEL": "WARNING",
    }
    slow = (
        "SELECT count(*) FROM credit_entries a, credit_entries b, credit_entries c, credit_entries d, "
        "credit_entries e, credit_entries f"
    )
    import signal as signals

    from websockets.sync.client import connect

    with tempfile.TemporaryDirectory(prefix="lc-bench-frozen-") as tmp:
        tmp_path = Path(tmp)
        services = {"postgres_url": args.postgres, "redis_url": args.redis} if stack == "scaled" else {}
        with migrated_environment(tmp_path, dev_secret=SECRET, redis_prefix="lcbench", **services, **extra) as env:  # type: ignore[arg-type]
            grant(env, ["bench_frozen"], grants=40, amount=2)
            frozen = DaphneProcess(env, tmp_path / "frozen.log").start()
            peer = DaphneProcess(env, tmp_path / "peer.log").start()
            try:
                with connect(f"{frozen.url}/ws?token={dev_token('bench_frozen', SECRET)}") as ws:
                    hello(ws)
                    ws.send(json.dumps({"event": "query", "data": {"sql": slow}, "id": "slow"}))
                    while server_rows(env, "SELECT count(*) FROM credits_hold WHERE status = 'pending'")[0][0] == 0:
                        time.sleep(0.05)
                    time.sleep(0.5)
                    assert frozen.process is not None
                    frozen.process.send_signal(signals.SIGSTOP)
                    stopped = time.monotonic()
                    while server_rows(env, "SELECT count(*) FROM credits_hold WHERE status = 'pending'")[0][0]:
                        time.sleep(0.2)
                    released_after = time.monotonic() - stopped
                    frozen.process.send_signal(signals.SIGCONT)
                    final = final_of(ws, "slow", timeout=args.dead * 2 + 60)
            finally:
                frozen.stop()
                peer.stop()
            holds = dict(server_rows(env, "SELECT status, count(*) FROM credits_hold GROUP BY status"))
            entries = dict(
                server_rows(
                    env,
                    "SELECT kind, count(*) FROM credits_ledgerentry WHERE kind IN ('capture', 'release') GROUP BY kind",
                )
            )
            try:
                summary = manage(env, "reconcile_ledger").strip().splitlines()[-1]
            except RuntimeError as exc:
                summary = str(exc).strip().splitlines()[-1]
            return {
                "stack": stack,
                "scenario": "frozen",
                "seconds_frozen_to_released_by_peer": round(released_after, 1),
                "final_event_after_resume": f"{final['event']} {final['data'].get('code', '')}".strip(),
                "holds": holds,
                "capture_release_entries": entries,
                "reconcile": summary,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["embedded", "scaled", "both"], default="both")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--heartbeat", type=float, default=5.0, help="LEDGERCORE_PROCESS_HEARTBEAT_SECONDS")
    parser.add_argument("--dead", type=float, default=30.0, help="LEDGERCORE_PROCESS_DEAD_SECONDS")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scenario", choices=["kill", "frozen", "both"], default="both")
    add_service_arguments(parser, worker=False)
    args = parser.parse_args()
    # Stopped early: still stop the server and drop the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stacks = ["embedded", "scaled"] if args.stack == "both" else [args.stack]
    for stack in stacks:
        if args.scenario in ("kill", "both"):
            print(json.dumps(run_stack(stack, args)), flush=True)
        if args.scenario in ("frozen", "both"):
            print(json.dumps(frozen_peer(stack, args)), flush=True)


if __name__ == "__main__":
    main()

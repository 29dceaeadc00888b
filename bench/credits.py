"""Credits benchmark: deductions per second and their latency on one hot
account and spread over many accounts, against a bare-transaction baseline
in the same run, and the commit-to-socket latency of the balance event.

    .venv/bin/python bench/credits.py [--stack embedded|scaled|both]
        [--threads 8] [--deductions 250] [--accounts 1000] [--events 200]

Per stack, on a fresh migrated database (devtools.servers.server_environment),
the parent re-invokes this script as ``--worker STACK`` with the stack's
environment, so that the worker's Django uses the same DATABASE_URL and
REDIS_URL as the server; the worker prints one ``result {...}`` line.

- **hot**: T threads each call ``credits.services.deduct_credits`` N times
  (1 credit) on ONE account, pre-funded with ``grant_credits``.
- **spread**: the same over --accounts accounts (one user each, each funded);
  at any moment the threads work on different accounts.
- **baseline**: the same threads, each op a ``transaction.atomic()`` around
  one ``SELECT 1`` round trip (on SQLite an IMMEDIATE transaction: it takes
  the write lock as a deduction does). Ratio = deductions/s / baseline ops/s.
- **/commit**: movements per group commit in the part (credits.combining;
  1.0 when no movement waited to share a commit, 0 for the baseline).
  With T threads on one account a commit takes at most T movements.
- **SQL/op**: SQL statements the op threads sent per op (BEGIN and COMMIT
  not counted; the event dispatcher's not included).
- **events**: the real server (daphne, as ``make run``) on the same database,
  one WebSocket as the bench user; the worker deducts M times, one at a time,
  and times each ``credit_balance_updated`` frame (matched by data.sequence)
  from the commit (a ``transaction.on_commit`` hook registered before the
  outbox's own) and from the return of ``deduct_credits``. On the scaled
  stack the commit-time push goes through Redis. On the embedded stack the
  in-memory layer is per process, so the worker's commit-time push refuses
  (NoLocalReceivers) and the server's outbox relay delivers the event, with
  LEDGERCORE_OUTBOX_RETRY_SECONDS=0.1: that figure is labelled "via relay".

Each deduction's events are pushed after commit by the event dispatcher
thread of the worker process (credits.events; on the embedded stack the
send is refused in process and the row left to the server's relay; on
the scaled stack a push through Redis and an UPDATE of the outbox rows),
beside the writing threads. After each part the worker counts the outbox
rows the dispatcher has not handled yet and waits until it has
(``flush_dispatcher``, not timed in the part): "with their pushes" is the
part's deductions over its time plus that wait. On the scaled stack
"from deduct_credits return" can be below zero: the frame may arrive first. Latency
percentiles are per op, measured in the worker. Client, server(s),
PostgreSQL and Redis share the machine; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import add_service_arguments, percentile  # noqa: E402
from devtools.servers import DaphneProcess, server_environment  # noqa: E402

SECRET = uuid.uuid4().hex + uuid.uuid4().hex
RESULT_PREFIX = "result "
EVENT_TIMEOUT = 15.0
DRAIN_TIMEOUT = 300.0
STACK_LABELS = {"embedded": "SQLite, in-memory layer", "scaled": "PostgreSQL, Redis"}


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# --- worker: one stack, Django configured from the inherited environment ----


def fund_accounts(prefix: str, count: int, credits: int) -> list[tuple[int, str]]:
    """``count`` users, each with its default application's account funded."""
    from django.db import transaction

    from accounts.services import get_or_create_user
    from credits.services import Actor, grant_credits

    accounts: list[tuple[int, str]] = []
    with transaction.atomic():
        for i in range(count):
            user = get_or_create_user(f"{prefix}{i}")
            application_id = user.default_application_id
            assert application_id is not None
            grant_credits(user.pk, application_id, credits, reason="bench funding", actor=Actor.system())
            accounts.append((user.pk, application_id))
    return accounts


def run_threads(threads: int, per_thread: int, op: Callable[[int, int], Any]) -> dict[str, Any]:
    """``threads`` threads each run ``op(thread, i)`` ``per_thread`` times,
    started together once each holds its own database connection."""
    from django.db import close_old_connections, connection, connections

    barrier = threading.Barrier(threads + 1, timeout=120)

    def work(t: int) -> tuple[list[float], int, str, int]:
        close_old_connections()
        statements = 0

        def count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal statements
            statements += 1
            return execute(sql, params, many, context)

        try:
            connection.ensure_connection()
            latencies: list[float] = []
            errors = 0
            first_error = ""
            barrier.wait()
            with connection.execute_wrapper(count):
                for i in range(per_thread):
                    started = time.perf_counter()
                    try:
                        op(t, i)
                    except Exception as exc:  # noqa: BLE001 - counted and reported, not retried
                        errors += 1
                        first_error = first_error or repr(exc)
                    else:
                        latencies.append((time.perf_counter() - started) * 1000)
            return latencies, errors, first_error, statements
        finally:
            connections.close_all()

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(work, t) for t in range(threads)]
        barrier.wait()
        started = time.perf_counter()
        outcomes = [future.result() for future in futures]
        elapsed = time.perf_counter() - started
    latencies = [value for outcome in outcomes for value in outcome[0]]
    return {
        "ops": len(latencies),
        "errors": sum(outcome[1] for outcome in outcomes),
        "first_error": next((outcome[2] for outcome in outcomes if outcome[2]), ""),
        # SQL statements the op threads sent (BEGIN and COMMIT not included).
        "statements_per_op": sum(outcome[3] for outcome in outcomes) / max(1, len(latencies)),
        "seconds": elapsed,
        "ops_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
    }


def undelivered() -> int:
    from credits.models import OutboxEvent

    return OutboxEvent.objects.filter(delivered_at__isnull=True).count()


async def event_latency(
    url: str, username: str, account: tuple[int, str], args: argparse.Namespace, pool: ThreadPoolExecutor
) -> dict[str, Any]:
    import jwt
    import websockets
    from django.db import transaction

    from credits.services import Actor, deduct_credits

    user_pk, application_id = account
    now = int(time.time())
    token = jwt.encode(
        {"sub": username, "iat": now, "exp": now + 3600}, os.environ["LEDGERCORE_DEV_JWT_SECRET"], algorithm="HS256"
    )
    loop = asyncio.get_running_loop()
    ws = await websockets.connect(f"{url}/ws?token={token}", open_timeout=60)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert hello["event"] == "connected", hello
    first = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert first["event"] == "credit_balance_updated", first

    arrivals: dict[int, float] = {}
    waiting: dict[int, asyncio.Event] = {}
    duplicates = 0

    async def reader() -> None:
        nonlocal duplicates
        async for raw in ws:
            arrived = time.perf_counter()
            frame = json.loads(raw)
            data = frame.get("data") or {}
            if frame.get("event") != "credit_balance_updated" or data.get("applicationId") != application_id:
                continue
            sequence = int(data["sequence"])
            if sequence in arrivals:
                duplicates += 1  # at-least-once delivery; clients dedupe by sequence
                continue
            arrivals[sequence] = arrived
            if sequence in waiting:
                waiting[sequence].set()

    reading = asyncio.create_task(reader())
    # The server's relay (started by this connection) first sends what the
    # throughput runs left undelivered (embedded stack); wait it out.
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while (left := await loop.run_in_executor(pool, undelivered)) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{left} outbox rows still undelivered after {DRAIN_TIMEOUT:.0f} s")
        await asyncio.sleep(0.2)

    def deduct_one() -> tuple[float, float, int]:
        marks: dict[str, float] = {}
        with transaction.atomic():
            # Registered before the outbox's hook, so it runs first after COMMIT.
            transaction.on_commit(lambda: marks.setdefault("commit", time.perf_counter()))
            entry = deduct_credits(user_pk, application_id, 1, action="bench_event", actor=Actor.user(username))
        return marks["commit"], time.perf_counter(), entry.sequence

    from_commit: list[float] = []
    from_return: list[float] = []
    missed = 0
    for n in range(-args.warmup, args.events):
        committed, returned, sequence = await loop.run_in_executor(pool, deduct_one)
        waiter = waiting.setdefault(sequence, asyncio.Event())
        if sequence in arrivals:
            waiter.set()
        try:
            await asyncio.wait_for(waiter.wait(), EVENT_TIMEOUT)
        except TimeoutError:
            missed += 1
            continue
        if n >= 0:
            from_commit.append((arrivals[sequence] - committed) * 1000)
            from_return.append((arrivals[sequence] - returned) * 1000)
    reading.cancel()
    await ws.close()
    return {
        "events": len(from_commit),
        "missed": missed,
        "duplicates": duplicates,
        "commit_p50_ms": percentile(from_commit, 50),
        "commit_p99_ms": percentile(from_commit, 99),
        "commit_max_ms": max(from_commit, default=float("nan")),
        "return_p50_ms": percentile(from_return, 50),
        "return_p99_ms": percentile(from_return, 99),
    }


def worker(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ledgercore.settings")
    import django

    django.setup()
    from django.db import connection, connections, transaction

    from credits.events import flush_dispatcher
    from credits.models import CreditAccount
    from credits.services import Actor, deduct_credits, group_commit_stats

    total = args.threads * args.deductions

    log(f"{stack}: funding 1 hot account and {args.accounts} spread accounts")
    funded_hot = total + args.warmup + 100
    hot_pk, hot_app = fund_accounts("bench_hot", 1, funded_hot)[0]
    spread = fund_accounts("bench_s", args.accounts, total // args.accounts + 10)
    event_account = fund_accounts("bench_ws", 1, args.events + args.warmup + 100)[0]
    actor = Actor.user("bench")

    def select_one(t: int, i: int) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def deduct_hot(t: int, i: int) -> None:
        deduct_credits(hot_pk, hot_app, 1, action="bench", actor=actor)

    def deduct_spread(t: int, i: int) -> None:
        user_pk, application_id = spread[(i * args.threads + t) % len(spread)]
        deduct_credits(user_pk, application_id, 1, action="bench", actor=actor)

    for _ in range(args.warmup):  # uncounted: first use of each code path
        deduct_hot(0, 0)
        select_one(0, 0)
    connections.close_all()

    results: dict[str, Any] = {}
    for name, op in (("baseline", select_one), ("hot", deduct_hot), ("spread", deduct_spread)):
        log(f"{stack}: {name}: {args.threads} threads x {args.deductions} ops")
        commits_before, movements_before = group_commit_stats()
        results[name] = run_threads(args.threads, args.deductions, op)
        commits, movements = group_commit_stats()
        commits, movements = commits - commits_before, movements - movements_before
        # Movements per group commit (1 when nothing waited to share one).
        results[name]["per_commit"] = movements / commits if commits else 0.0
        # How far the event dispatcher is behind when the part ends, and how
        # long it then takes to handle every row (untimed above): the part's
        # rate with its events pushed counts that time too.
        results[name]["unpushed"] = undelivered()
        started = time.perf_counter()
        flush_dispatcher(600)
        drain = time.perf_counter() - started
        results[name]["drain_s"] = drain
        results[name]["with_pushes_per_s"] = results[name]["ops"] / (results[name]["seconds"] + drain)

    account = CreditAccount.objects.get(user_id=hot_pk, application_id=hot_app)
    expected = funded_hot - args.warmup - results["hot"]["ops"]
    results["hot"]["balance_ok"] = account.balance == expected
    results["hot"]["sequence"] = account.last_sequence
    # Embedded stack: the worker's commit-time sends reach no connection and
    # leave their rows pending for the server's relay.
    results["left_to_relay"] = undelivered()

    log(f"{stack}: events: starting the server, {args.events} deductions one at a time")
    server = DaphneProcess(dict(os.environ), Path(os.environ["LEDGERCORE_VAR_DIR"]) / "daphne.log").start()
    pool = ThreadPoolExecutor(1)
    try:
        results["events"] = asyncio.run(event_latency(server.url, "bench_ws0", event_account, args, pool))
    except Exception:
        print("--- server log ---", *server.logs().splitlines()[-60:], sep="\n", file=sys.stderr)
        raise
    finally:
        server.stop()
        pool.submit(connections.close_all).result()
        pool.shutdown()
    results["events"]["path"] = "via relay" if stack == "embedded" else "commit-time push"
    results["events"]["retry_seconds"] = float(os.environ.get("LEDGERCORE_OUTBOX_RETRY_SECONDS", "5"))
    return results


# --- parent: environments, worker processes, report --------------------------


def run_stack(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {"dev_secret": SECRET, "LOG_LEVEL": "WARNING"}
        if stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcbench")
        else:
            # The worker's in-memory layer reaches no connection of the server:
            # the relay delivers, checking every 0.1 s.
            kwargs["LEDGERCORE_OUTBOX_RETRY_SECONDS"] = "0.1"
        log(f"{stack}: preparing a fresh database")
        with server_environment(Path(tmp), **kwargs) as env:
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", stack]
            for option in ("threads", "deductions", "accounts", "events", "warmup"):
                command += [f"--{option}", str(getattr(args, option))]
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
            if done.returncode != 0 or not lines:
                raise RuntimeError(f"{stack} worker failed (exit {done.returncode}):\n{done.stdout}")
            return json.loads(lines[-1][len(RESULT_PREFIX) :])


def report(stack: str, results: dict[str, Any], args: argparse.Namespace) -> None:
    base = results["baseline"]["ops_per_s"]
    print(f"\n== {stack} stack ({STACK_LABELS[stack]}) ==")
    header = f"{'ops/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'ratio':>8}{'errors':>8}"
    print(f"{'':36}{header}{'/commit':>9}{'SQL/op':>8}")
    for key, label in (
        ("baseline", "baseline: SELECT 1 in atomic()"),
        ("hot", "deduct, 1 hot account"),
        ("spread", f"deduct, {args.accounts:,} accounts"),
    ):
        r = results[key]
        print(
            f"{label:36}{r['ops_per_s']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['max_ms']:>10.1f}"
            f"{r['ops_per_s'] / base:>8.2f}{r['errors']:>8}"
            f"{r.get('per_commit', 0.0):>9.1f}{r.get('statements_per_op', 0.0):>8.2f}"
        )
    e = results["events"]
    path = f"{e['path']}, retry {e['retry_seconds']:g} s" if stack == "embedded" else e["path"]
    print(f"balance event, commit -> socket ({path}), {e['events']} events, {e['missed']} missed:")
    commit = f"{e['commit_p50_ms']:>10.2f}{e['commit_p99_ms']:>10.2f}{e['commit_max_ms']:>10.1f}"
    print(f"{'  from commit':36}{'':>10}{commit}")
    print(f"{'  from deduct_credits return':36}{'':>10}{e['return_p50_ms']:>10.2f}{e['return_p99_ms']:>10.2f}")
    for key in ("hot", "spread"):
        r = results[key]
        if stack == "scaled" and "drain_s" in r:
            print(
                f"  {key}: outbox rows not yet handled by the event dispatcher at the end {r['unpushed']:,}; "
                f"all handled {r['drain_s']:.2f} s later: {r['with_pushes_per_s']:.0f} deductions/s with their pushes"
            )
    notes = [f"hot balance consistent: {results['hot']['balance_ok']}"]
    if results["left_to_relay"]:
        notes.append(f"outbox rows left to the relay by the bench process: {results['left_to_relay']:,}")
    if e["duplicates"]:
        notes.append(f"duplicate balance events: {e['duplicates']}")
    for key in ("baseline", "hot", "spread"):
        if results[key]["first_error"]:
            notes.append(f"{key} first error: {results[key]['first_error']}")
    print("  " + "; ".join(notes))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", choices=["embedded", "scaled", "both"], default="both")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--deductions", type=int, default=250, help="deductions (and baseline ops) per thread")
    p.add_argument("--accounts", type=int, default=1000, help="accounts of the spread run")
    p.add_argument("--events", type=int, default=200, help="sequential deductions timed to the socket")
    p.add_argument("--warmup", type=int, default=5, help="uncounted ops before each measured part")
    add_service_arguments(p)
    return p


def main() -> None:
    args = parser().parse_args()
    if args.worker:
        results = worker(args.worker, args)
        print(RESULT_PREFIX + json.dumps(results), flush=True)
        return
    stacks = ["embedded", "scaled"] if args.stack == "both" else [args.stack]
    print(
        f"bench/credits.py: {args.threads} threads x {args.deductions} deductions (1 hot account; "
        f"{args.accounts:,} accounts), baseline SELECT 1 per transaction, {args.events} balance events"
    )
    everything: dict[str, Any] = {}
    for stack in stacks:
        everything[stack] = run_stack(stack, args)
        report(stack, everything[stack], args)
    settings = {k: getattr(args, k) for k in ("threads", "deductions", "accounts", "events", "warmup")}
    print("json " + json.dumps({**settings, "stacks": everything}))


if __name__ == "__main__":
    main()

"""Query engine benchmark: a 1,000,000-row catalog table streamed to one
WebSocket client, against the database driver fetching the same rows in
the same run; first-rows latency; cancel-to-stop latency.

    .venv/bin/python bench/query.py [--stack embedded|scaled|both]
        [--rows 1000000] [--latency-runs 10] [--stream-runs 3] [--cancel-runs 5]
        [--chunk-rows N] [--conn-max-age SECONDS]

Per stack, on a fresh migrated database (devtools.servers.server_environment),
the parent re-invokes this script as ``--worker STACK`` with the stack's
environment, so that the worker's Django uses the same DATABASE_URL and
REDIS_URL as the server; the worker prints one ``result {...}`` line.

- **Table**: ``credit_entries``, the private ledger of one bench user (the
  catalog has no public table yet), holding --rows rows. They are written
  with one raw ``INSERT … SELECT`` into credits_ledgerentry and one row in
  credits_creditaccount (the ledger's triggers refuse UPDATE and DELETE,
  not INSERT); hashes are dummy strings and the chain does not verify: this
  is a read benchmark, not a ledger.
- **Query**: ``SELECT transaction_id, sequence, type, amount, balance_after,
  created_at FROM credit_entries`` on a real daphne server (as ``make run``)
  with LEDGERCORE_QUERY_MAX_ROWS and LEDGERCORE_QUERY_DEFAULT_LIMIT raised to
  --rows, so every row is streamed; the tenant guard is in the SQL as for
  any user.
- **Baseline**: the SQL the compiler produced for that query (tenant guard
  included), run with the driver directly from this process (sqlite3;
  psycopg with Django's login and a plain client-side cursor), every row
  fetched with ``fetchmany(10000)``, no conversion.
- **Streamed**: rows/s from sending ``query`` to receiving
  ``query_completed``, the client decoding every frame (one ``websockets``
  client, in this process). Driver fetch and stream alternate, --stream-runs
  pairs; ratio = median over pairs of streamed rows/s / driver rows/s, so
  that both sides of a pair see the same load on a shared machine. CPU per
  row: the server process's (from /proc), this process's while it reads the
  stream, and the driver thread's.
- **First rows**: --latency-runs queries, each cancelled as soon as its first
  ``query_response`` arrives: time to ``query_started`` and to the first
  chunk, p50/p95 (one uncounted warm-up query first; the cold first query
  of the process is reported apart).
- **Cancel**: (a) during streaming: the cancels of the latency runs;
  (b) during long work inside the database: ``SELECT count(*)`` over a
  self cross join of the table (10^12 rows), cancelled 0.5 s after
  ``query_started``. Time from sending ``query_cancel`` to ``query_error
  CANCELLED``, and the check that the database stopped: on PostgreSQL the
  time until pg_stat_activity shows no active backend of the query role;
  on SQLite the server's CPU use in the 0.5 s after the error (the query
  ran inside it).

Client, server, PostgreSQL and Redis share the machine; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import add_service_arguments, cpu_seconds, percentile  # noqa: E402
from devtools.servers import DaphneProcess, server_environment  # noqa: E402

SECRET = uuid.uuid4().hex + uuid.uuid4().hex
RESULT_PREFIX = "result "
USER = "bench_query"
COLUMNS = "transaction_id, sequence, type, amount, balance_after, created_at"
STREAM_SQL = f"SELECT {COLUMNS} FROM credit_entries"
LONG_SQL = "SELECT count(*) FROM credit_entries a, credit_entries b"
DRIVER_FETCH = 10_000
FRAME_TIMEOUT = 60.0
CANCEL_AFTER_SECONDS = 0.5
STACK_LABELS = {"embedded": "SQLite, in-memory layer", "scaled": "PostgreSQL, Redis"}


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# --- worker: data, baseline ---------------------------------------------------


def load_rows(rows: int) -> tuple[int, str]:
    """The bench user, and ``rows`` ledger entries on its account in its
    default application, written with raw SQL in one transaction."""
    from django.db import connection, transaction

    from accounts.services import get_or_create_user

    user = get_or_create_user(USER)
    application = user.default_application_id
    assert application is not None
    postgres = connection.vendor == "postgresql"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO credits_creditaccount (user_id, application_id, balance, lifetime_earned, lifetime_spent, "
            "last_sequence, last_hash, expiring, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, 0, %s, %s, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            [user.pk, application, rows, rows, rows, "0" * 64],
        )
        cursor.execute(
            "SELECT id FROM credits_creditaccount WHERE user_id = %s AND application_id = %s", [user.pk, application]
        )
        account = cursor.fetchone()[0]
        columns = (
            "account_id, sequence, kind, amount, spent, balance_after, lifetime_earned_after, lifetime_spent_after, "
            "action, reason, actor_type, actor_id, reference, idempotency_key, created_at, prev_hash, hash"
        )
        if postgres:
            cursor.execute(
                f"INSERT INTO credits_ledgerentry ({columns}) "
                "SELECT %s, n, 'grant', 1, 0, n, n, 0, 'bench', 'bench rows', 'system', '', '', 'bench-' || n, "
                "timestamptz '2026-01-01 00:00:00+00' + n * interval '1 second', repeat('0', 64), repeat('0', 64) "
                "FROM generate_series(1, %s) AS n",
                [account, rows],
            )
        else:
            cursor.execute(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
                f"INSERT INTO credits_ledgerentry ({columns}) "
                "SELECT %s, n, 'grant', 1, 0, n, n, 0, 'bench', 'bench rows', 'system', '', '', 'bench-' || n, "
                "datetime('2026-01-01 00:00:00', '+' || n || ' seconds'), printf('%%064d', 0), printf('%%064d', 0) "
                "FROM s",
                [rows, account],
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return user.pk, application


def driver_fetch(sql: str, params: dict[str, Any], settings_dict: dict[str, Any], vendor: str) -> dict[str, Any]:
    """The compiled SQL straight through the driver: every row fetched."""
    started, cpu = time.perf_counter(), time.thread_time()
    rows = 0
    if vendor == "sqlite":
        import sqlite3

        db = sqlite3.connect(str(settings_dict["NAME"]))
        try:
            cursor = db.execute(sql, params)
            while batch := cursor.fetchmany(DRIVER_FETCH):
                rows += len(batch)
        finally:
            db.close()
    else:
        import psycopg

        with psycopg.connect(
            dbname=settings_dict["NAME"],
            user=settings_dict.get("USER") or None,
            password=settings_dict.get("PASSWORD") or None,
            host=settings_dict.get("HOST") or None,
            port=settings_dict.get("PORT") or None,
        ) as pg:
            results = pg.execute(sql, params)
            while batch := results.fetchmany(DRIVER_FETCH):
                rows += len(batch)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "cpu_s": time.thread_time() - cpu}


# --- worker: the WebSocket client ---------------------------------------------


class Session:
    """One WebSocket as the bench user; queries one at a time."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.counter = 0

    @classmethod
    async def open(cls, url: str) -> Session:
        import jwt
        import websockets

        now = int(time.time())
        token = jwt.encode(
            {"sub": USER, "iat": now, "exp": now + 3600}, os.environ["LEDGERCORE_DEV_JWT_SECRET"], algorithm="HS256"
        )
        ws = await websockets.connect(f"{url}/ws?token={token}", max_size=None, open_timeout=60)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert hello["event"] == "connected", hello
        return cls(ws)

    async def query(
        self, sql: str, *, cancel_on_first: bool = False, cancel_after: float | None = None
    ) -> dict[str, Any]:
        """Send ``sql``; read until query_completed or query_error. Times
        are seconds from sending. Cancels on the first chunk, or
        ``cancel_after`` seconds after query_started, when asked."""
        self.counter += 1
        request_id = f"q{self.counter}"
        marks: dict[str, float] = {}
        sent = time.perf_counter()
        result: dict[str, Any] = {"rows": 0, "frames": 0, "bytes": 0, "sent_at": sent}
        await self.ws.send(json.dumps({"event": "query", "data": {"sql": sql}, "id": request_id}))
        query_id = ""
        cancel_task: asyncio.Task[None] | None = None

        async def cancel(delay: float) -> None:
            await asyncio.sleep(delay)
            marks["cancel"] = time.perf_counter() - sent
            await self.ws.send(json.dumps({"event": "query_cancel", "data": {"queryId": query_id}}))

        try:
            while True:
                raw = await asyncio.wait_for(self.ws.recv(), FRAME_TIMEOUT)
                now = time.perf_counter() - sent
                frame = json.loads(raw)
                if frame.get("id") != request_id:
                    continue  # the balance event after connecting, and the like
                event, data = frame["event"], frame["data"]
                if event == "query_started":
                    marks["started"] = now
                    query_id = data["queryId"]
                    if cancel_after is not None:
                        cancel_task = asyncio.create_task(cancel(cancel_after))
                elif event == "query_response":
                    result["rows"] += len(data["rows"])
                    result["frames"] += 1
                    result["bytes"] += len(raw)
                    if "first" not in marks:
                        marks["first"] = now
                        if cancel_on_first:
                            await cancel(0)
                elif event in ("query_completed", "query_error"):
                    marks["end"] = now
                    result["event"], result["data"] = event, data
                    return {**result, **marks}
        finally:
            if cancel_task is not None:
                cancel_task.cancel()


def role_backends(role: str) -> tuple[int, int]:
    """(active, all) backends of the query role on this database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FROM pg_stat_activity "
            "WHERE usename = %s AND datname = current_database()",
            [role],
        )
        active, total = cursor.fetchone()
    return int(active), int(total)


async def database_stopped(stack: str, server_pid: int, role: str, cancel_sent: float) -> dict[str, Any]:
    """How the database looks once the query ended with CANCELLED."""
    from asgiref.sync import sync_to_async

    if stack == "embedded":
        before = cpu_seconds(server_pid)
        await asyncio.sleep(0.5)
        return {"server_cpu_pct_after": (cpu_seconds(server_pid) - before) / 0.5 * 100}
    backends = sync_to_async(role_backends, thread_sensitive=True)
    while True:
        active, total = await backends(role)
        if active == 0:
            return {"stopped_s": time.perf_counter() - cancel_sent, "role_backends_left": total}
        if time.perf_counter() - cancel_sent > 10:
            return {"stopped_s": float("nan"), "role_backends_left": total}
        await asyncio.sleep(0.01)


async def client_runs(
    stack: str, url: str, server_pid: int, baseline: tuple[Any, ...], args: argparse.Namespace
) -> dict[str, Any]:
    from django.conf import settings

    role = str(settings.LEDGERCORE_QUERY_PG_ROLE)
    session = await Session.open(url)
    results: dict[str, Any] = {}
    try:
        log(f"{stack}: cold first query, warm-up")
        cold = await session.query(STREAM_SQL, cancel_on_first=True)
        results["cold"] = {k: cold.get(k) for k in ("started", "first", "end")}
        await session.query("SELECT count(*) FROM credit_entries")

        log(f"{stack}: first rows x {args.latency_runs} (each cancelled on its first chunk)")
        latency = [await session.query(STREAM_SQL, cancel_on_first=True) for _ in range(args.latency_runs)]
        started = [run["started"] * 1000 for run in latency]
        first = [run["first"] * 1000 for run in latency]
        cancel_streaming = [(run["end"] - run["cancel"]) * 1000 for run in latency]
        codes = sorted({run["data"].get("code", run["event"]) for run in latency})
        results["latency"] = {
            "runs": len(latency),
            "started_p50_ms": percentile(started, 50),
            "started_p95_ms": percentile(started, 95),
            "first_p50_ms": percentile(first, 50),
            "first_p95_ms": percentile(first, 95),
            "cancel_streaming_p50_ms": percentile(cancel_streaming, 50),
            "cancel_streaming_max_ms": max(cancel_streaming),
            "endings": codes,
        }

        log(f"{stack}: driver and full stream, alternating, x {args.stream_runs}")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, driver_fetch, *baseline)  # uncounted: warms the page cache
        streams, fetches = [], []
        for _ in range(args.stream_runs):
            fetch = await loop.run_in_executor(None, driver_fetch, *baseline)
            if fetch["rows"] != args.rows:
                raise RuntimeError(f"the driver fetched {fetch['rows']} rows, not {args.rows}")
            fetches.append(fetch)
            server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
            run = await session.query(STREAM_SQL)
            run["server_cpu_s"] = cpu_seconds(server_pid) - server_cpu
            run["client_cpu_s"] = time.process_time() - client_cpu
            if run["event"] != "query_completed" or run["rows"] != args.rows:
                raise RuntimeError(f"stream ended with {run['event']} {run['data']} after {run['rows']} rows")
            streams.append(run)
        rates = [run["rows"] / run["end"] for run in streams]
        driver_rates = [fetch["rows_per_s"] for fetch in fetches]
        results["driver"] = {
            "rows_per_s_median": statistics.median(driver_rates),
            "rows_per_s_all": driver_rates,
            "seconds_median": statistics.median(fetch["seconds"] for fetch in fetches),
            "cpu_us_per_row": statistics.median(fetch["cpu_s"] for fetch in fetches) / args.rows * 1e6,
        }
        results["ratio_per_pair"] = [rate / driver for rate, driver in zip(rates, driver_rates, strict=True)]
        results["stream"] = {
            "runs": len(streams),
            "rows": args.rows,
            "rows_per_s_median": statistics.median(rates),
            "rows_per_s_all": rates,
            "seconds_median": statistics.median(run["end"] for run in streams),
            "server_cpu_us_per_row": statistics.median(run["server_cpu_s"] for run in streams) / args.rows * 1e6,
            "client_cpu_us_per_row": statistics.median(run["client_cpu_s"] for run in streams) / args.rows * 1e6,
            "frames": streams[0]["frames"],
            "mb": streams[0]["bytes"] / 1e6,
            "started_ms": statistics.median(run["started"] * 1000 for run in streams),
            "first_ms": statistics.median(run["first"] * 1000 for run in streams),
            "truncated": any(run["data"]["truncated"] for run in streams),
        }

        log(f"{stack}: cancel during long work in the database x {args.cancel_runs}")
        cancels = []
        for _ in range(args.cancel_runs):
            run = await session.query(LONG_SQL, cancel_after=CANCEL_AFTER_SECONDS)
            if run.get("data", {}).get("code") != "CANCELLED":
                raise RuntimeError(f"long query ended with {run.get('event')} {run.get('data')}")
            cancel_sent = run["sent_at"] + run["cancel"]
            cancels.append({**run, **await database_stopped(stack, server_pid, role, cancel_sent)})
        to_error = [(run["end"] - run["cancel"]) * 1000 for run in cancels]
        results["cancel"] = {
            "runs": len(cancels),
            "to_error_p50_ms": percentile(to_error, 50),
            "to_error_max_ms": max(to_error),
        }
        if stack == "scaled":
            stopped = [run["stopped_s"] * 1000 for run in cancels]
            results["cancel"]["db_stopped_max_ms"] = max(stopped)
            results["cancel"]["role_backends_left"] = max(run["role_backends_left"] for run in cancels)
        else:
            results["cancel"]["server_cpu_pct_after_max"] = max(run["server_cpu_pct_after"] for run in cancels)
    finally:
        await session.ws.close()
    return results


def worker(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ledgercore.settings")
    import django

    django.setup()
    from django.db import connection, connections

    from queryengine.catalog import catalog
    from queryengine.compiler import Caller, compile_query

    public = [table.name for table in catalog.tables() if str(table.scope) == "public"]
    log(f"{stack}: loading {args.rows:,} rows into credit_entries (public catalog tables: {public or 'none'})")
    began = time.perf_counter()
    user_pk, application = load_rows(args.rows)
    results: dict[str, Any] = {"load_seconds": time.perf_counter() - began, "public_tables": public}

    compiled = compile_query(
        STREAM_SQL,
        None,
        catalog,
        Caller(user_pk, application),
        dialect="postgres" if connection.vendor == "postgresql" else "sqlite",
        max_rows=args.rows,
        default_limit=args.rows,
    )
    connections.close_all()
    baseline = (compiled.sql, dict(compiled.params), connection.settings_dict, connection.vendor)

    log(f"{stack}: starting the server")
    server = DaphneProcess(dict(os.environ), Path(os.environ["LEDGERCORE_VAR_DIR"]) / "daphne.log").start()
    results["load_average_before"] = os.getloadavg()
    try:
        assert server.process is not None
        results.update(asyncio.run(client_runs(stack, server.url, server.process.pid, baseline, args)))
    except Exception:
        print("--- server log ---", *server.logs().splitlines()[-60:], sep="\n", file=sys.stderr)
        raise
    finally:
        server.stop()
    results["load_average_after"] = os.getloadavg()
    results["ratio"] = statistics.median(results["ratio_per_pair"])
    return results


# --- parent: environments, worker processes, report --------------------------


def run_stack(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {
            "dev_secret": SECRET,
            "LOG_LEVEL": "WARNING",
            "LEDGERCORE_QUERY_MAX_ROWS": str(args.rows),
            "LEDGERCORE_QUERY_DEFAULT_LIMIT": str(args.rows),
            "LEDGERCORE_QUERY_TIME_LIMIT_MS": "300000",
            "LEDGERCORE_THROTTLE_RATES": "expensive=10000/min",
        }
        if args.chunk_rows:
            kwargs["LEDGERCORE_QUERY_CHUNK_ROWS"] = str(args.chunk_rows)
        if stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcbench")
        log(f"{stack}: preparing a fresh database")
        with server_environment(Path(tmp), **kwargs) as base_env:
            env = base_env
            if stack == "scaled" and args.conn_max_age:
                env = {**env, "DATABASE_URL": f"{env['DATABASE_URL']}?conn_max_age={args.conn_max_age}"}
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", stack]
            for option in ("rows", "latency_runs", "stream_runs", "cancel_runs"):
                command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
            if done.returncode != 0 or not lines:
                raise RuntimeError(f"{stack} worker failed (exit {done.returncode}):\n{done.stdout}")
            return json.loads(lines[-1][len(RESULT_PREFIX) :])


def report(stack: str, r: dict[str, Any]) -> None:
    s, lat, c, d = r["stream"], r["latency"], r["cancel"], r["driver"]
    print(f"\n== {stack} stack ({STACK_LABELS[stack]}), {s['rows']:,} rows, loaded in {r['load_seconds']:.1f} s ==")
    print(f"{'':44}{'value':>20}{'target':>12}{'met':>6}")

    def line(label: str, value: str, target: str = "", met: bool | None = None) -> None:
        print(f"{label:44}{value:>20}{target:>12}{'' if met is None else ('yes' if met else 'NO'):>6}")

    line("driver rows/s (baseline, median)", f"{d['rows_per_s_median']:,.0f}")
    line("streamed rows/s to the client (median)", f"{s['rows_per_s_median']:,.0f}")
    line("ratio streamed / driver (median of pairs)", f"{r['ratio']:.2f}", ">= 0.50", r["ratio"] >= 0.5)
    line("  each pair", " ".join(f"{ratio:.2f}" for ratio in r["ratio_per_pair"]))
    line(f"stream: seconds, {s['frames']:,} frames, MB", f"{s['seconds_median']:.2f} / {s['mb']:.0f}")
    line(
        "CPU us/row: server / client / driver",
        f"{s['server_cpu_us_per_row']:.2f} / {s['client_cpu_us_per_row']:.2f} / {d['cpu_us_per_row']:.2f}",
    )
    line(
        "query_started p50 / p95 ms",
        f"{lat['started_p50_ms']:.1f} / {lat['started_p95_ms']:.1f}",
        "p95 <= 100",
        lat["started_p95_ms"] <= 100,
    )
    line(
        "first query_response p50 / p95 ms",
        f"{lat['first_p50_ms']:.1f} / {lat['first_p95_ms']:.1f}",
        "p95 <= 300",
        lat["first_p95_ms"] <= 300,
    )
    cold = r["cold"]
    line("cold first query: started / first ms", f"{cold['started'] * 1000:.0f} / {cold['first'] * 1000:.0f}")
    line(
        "cancel while streaming p50 / max ms",
        f"{lat['cancel_streaming_p50_ms']:.1f} / {lat['cancel_streaming_max_ms']:.1f}",
        "max <= 1000",
        lat["cancel_streaming_max_ms"] <= 1000,
    )
    line(
        "cancel in-database work p50 / max ms",
        f"{c['to_error_p50_ms']:.1f} / {c['to_error_max_ms']:.1f}",
        "max <= 1000",
        c["to_error_max_ms"] <= 1000,
    )
    before, after = r["load_average_before"][0], r["load_average_after"][0]
    line("1-min load average before / after (2 cores)", f"{before:.1f} / {after:.1f}")
    if "db_stopped_max_ms" in c:
        line("  no active query-role backend after, max ms", f"{c['db_stopped_max_ms']:.1f}")
        line("  query-role backends left after", f"{c['role_backends_left']}")
    else:
        line("  server CPU % in 0.5 s after, max", f"{c['server_cpu_pct_after_max']:.0f}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", choices=["embedded", "scaled", "both"], default="both")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--latency-runs", type=int, default=10)
    p.add_argument("--stream-runs", type=int, default=3)
    p.add_argument("--cancel-runs", type=int, default=5)
    p.add_argument("--chunk-rows", type=int, default=0, help="LEDGERCORE_QUERY_CHUNK_ROWS of the server (0: default)")
    p.add_argument(
        "--conn-max-age", type=int, default=0, help="scaled stack: Django's CONN_MAX_AGE for the server (0: default)"
    )
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
        f"bench/query.py: {args.rows:,} rows of credit_entries streamed over one WebSocket vs the driver; "
        f"{args.latency_runs} first-rows runs, {args.stream_runs} full streams, {args.cancel_runs} cancels"
    )
    everything: dict[str, Any] = {}
    for stack in stacks:
        everything[stack] = run_stack(stack, args)
        report(stack, everything[stack])
    settings = {
        k: getattr(args, k)
        for k in ("rows", "latency_runs", "stream_runs", "cancel_runs", "chunk_rows", "conn_max_age")
    }
    print("json " + json.dumps({**settings, "stacks": everything}))


if __name__ == "__main__":
    main()

"""Shutdown benchmark: SIGTERM to a server process holding many connections.

For each stack, one server process (``ledgercore.serve``, as ``make run``)
on a fresh database, N connections (10 per user) all subscribed to one
application room, then SIGTERM:

- ``idle``: nothing in flight; every connection is closed at once;
- ``query``: one more connection has a query running that outlasts the drain
  window (``LEDGERCORE_DRAIN_SECONDS``, default 10 s): it is stopped at the
  deadline;
- ``plain daphne`` and ``plain daphne, query``: the same two served by the
  ``daphne`` command (what ran before ``ledgercore.serve``), for comparison.

Measured from the signal: the time until the last client saw its socket
closed, the close codes seen, and the time until the process exited (and
its exit code, and how many tracebacks it logged).

    .venv/bin/python bench/shutdown.py [--stack embedded|scaled|both]
        [--connections 500] [--drain 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import jwt
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import add_service_arguments
from devtools.servers import DaphneProcess, manage, migrated_environment

SECRET = uuid.uuid4().hex + uuid.uuid4().hex
TABS_PER_USER = 10
CONNECT_BATCH = 50
APP = "app_bench"
ROOM = f"application:{APP}"
# A count over a 6-way cross join of the caller's 30 ledger rows: past its
# time limit (30 s here, longer than the drain window).
ENDLESS_SQL = "SELECT count(*) FROM " + ", ".join(f"credit_entries t{i}" for i in range(6))

SETUP = """
from accounts import services
from accounts.models import Application
from credits import services as credits
app, _ = Application.objects.get_or_create(id="app_bench", defaults={{"name": "bench"}})
for i in range({users}):
    services.add_member(app, services.get_or_create_user(f"bench_u{{i}}"))
asker = services.get_or_create_user("bench_asker")
services.add_member(app, asker)
for i in range(30):
    credits.grant_credits(asker.pk, app.id, 10, reason=f"grant {{i}}", actor=credits.Actor.system())
"""


def token(user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "app": APP, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


async def reply_to(ws: Any, request_id: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if frame.get("id") == request_id:
            return frame


async def subscriber(url: str, user: str) -> Any:
    # No client keepalive: a client busy with 500 sockets must not time its
    # own pings out.
    ws = await websockets.connect(f"{url}/ws?token={token(user)}", max_size=None, open_timeout=60, ping_interval=None)
    await ws.send(json.dumps({"event": "subscribe", "data": {"room": ROOM}, "id": "sub"}))
    reply = await reply_to(ws, "sub")
    assert reply["event"] == "subscribed", reply
    return ws


async def closed_at(ws: Any) -> tuple[float, int | None, str, list[dict[str, Any]]]:
    """When the server closed ``ws``, its code and reason, and the frames
    carrying a request id received meanwhile."""
    frames = []
    try:
        async for raw in ws:
            frame = json.loads(raw)
            if "id" in frame and frame["event"] != "query_progress":
                frames.append(frame)
    except websockets.ConnectionClosed:
        pass
    return time.monotonic(), ws.close_code, ws.close_reason or "", frames


async def measure(server: DaphneProcess, users: list[str], with_query: bool) -> dict[str, Any]:
    sockets: list[Any] = []
    watchers: list[asyncio.Task[Any]] = []
    for start in range(0, len(users), CONNECT_BATCH):
        batch = await asyncio.gather(*(subscriber(server.url, u) for u in users[start : start + CONNECT_BATCH]))
        sockets.extend(batch)
        # Every socket is read all along (the room's presence events).
        watchers.extend(asyncio.create_task(closed_at(ws)) for ws in batch)
    await asyncio.sleep(1.0)  # the joins' presence events settle
    asker = None
    if with_query:
        asker = await websockets.connect(f"{server.url}/ws?token={token('bench_asker')}", max_size=None)
        await asker.send(json.dumps({"event": "query", "data": {"sql": ENDLESS_SQL}, "id": "q"}))
        started = await reply_to(asker, "q")
        assert started["event"] == "query_started", started
    early = [w for w in watchers if w.done()]
    if early:
        raise RuntimeError(f"{len(early)} sockets closed before the signal")
    asker_watch = asyncio.create_task(closed_at(asker)) if asker else None
    assert server.process is not None
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(server.process.wait, 120)
    exited = time.monotonic() - signalled
    closes = await asyncio.gather(*watchers)
    result: dict[str, Any] = {
        "connections": len(sockets),
        "all_closed_s": max(c[0] for c in closes) - signalled,
        "close_codes": dict(Counter(str(c[1]) for c in closes)),
        "with_reason": sum(1 for c in closes if c[2]),
        "exit_s": exited,
        "exit_code": exit_code,
        "tracebacks": server.logs().count("Traceback"),
    }
    if asker_watch is not None:
        at, code, _, frames = await asker_watch
        result["query_client"] = {
            "closed_s": at - signalled,
            "close_code": code,
            "final": frames[-1]["event"] + " " + str(frames[-1]["data"].get("code")) if frames else None,
        }
    return result


def run_stack(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    users = [f"bench_u{i // TABS_PER_USER}" for i in range(args.connections)]
    extra = {
        "LEDGERCORE_THROTTLE_RATES": "connection=100000/s,user=100000/s",
        "LEDGERCORE_DRAIN_SECONDS": str(args.drain),
        "LEDGERCORE_PRICES": "query=5",
        "LEDGERCORE_QUERY_TIME_LIMIT_MS": "30000",
        "LOG_LEVEL": "INFO",
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {"dev_secret": SECRET, **extra}
        if stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcbench")
        with migrated_environment(Path(tmp), **kwargs) as env:
            manage(env, "shell", "-c", SETUP.format(users=len(set(users))))
            for name, server_module, with_query in (
                ("idle", "ledgercore.serve", False),
                ("query", "ledgercore.serve", True),
                ("plain daphne", "daphne", False),
                ("plain daphne, query", "daphne", True),
            ):
                print(f"  {stack}: {name}", file=sys.stderr, flush=True)
                server = DaphneProcess(env, Path(tmp) / f"{name}.log", server_module=server_module).start()
                try:
                    results[name] = asyncio.run(measure(server, users, with_query))
                finally:
                    server.kill()
                if args.logs:
                    target = Path(args.logs) / f"{stack}-{name.replace(' ', '_').replace(',', '')}.log"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(server.logs())
    return results


def report(stack: str, results: dict[str, Any]) -> None:
    print(f"\n== {stack} stack ==")
    for name, r in results.items():
        line = (
            f"{name:14} {r['connections']} connections: all closed in {r['all_closed_s']:.2f} s "
            f"(codes {r['close_codes']}, {r['with_reason']} with a reason); exit {r['exit_code']} "
            f"after {r['exit_s']:.2f} s; {r['tracebacks']} tracebacks"
        )
        if "query_client" in r:
            q = r["query_client"]
            line += f"; query client: {q['final']}, closed {q['close_code']} after {q['closed_s']:.2f} s"
        print(line)
    print("json " + json.dumps({"stack": stack, **results}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["embedded", "scaled", "both"], default="both")
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--drain", type=float, default=10.0, help="LEDGERCORE_DRAIN_SECONDS")
    parser.add_argument("--logs", help="folder to keep the servers' logs in")
    add_service_arguments(parser, worker=False)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.connections + 1024)), hard))
    print(
        f"bench/shutdown.py: {args.connections} connections ({TABS_PER_USER} per user) in one room, "
        f"drain window {args.drain:g} s; one server process"
    )
    for stack in ["embedded", "scaled"] if args.stack == "both" else [args.stack]:
        report(stack, run_stack(stack, args))


if __name__ == "__main__":
    main()

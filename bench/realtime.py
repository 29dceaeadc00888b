"""Realtime benchmark: time to connect, connections held, ping/pong
throughput and latency, and fan-out of a broadcast to one room of many
subscribers; the same fan-out to Socket.IO subscribers of /socket.io/
(bench/socketio_path.py).

Each run starts, in the same run, the real server (daphne, as ``make run``)
and a baseline: a bare ASGI echo/fan-out app on the same daphne
(bench/echo_app.py). It prints absolute figures and ratios against the
baseline. With ``--peers``, the same load client also drives the peers
(bench/node_peers.py, installed by ``make bench-peers``): the Node.js
Socket.IO server with the Socket.IO clients, the bare ``ws`` server with
the native ones, both verifying tokens; it prints the project / peer
ratios as a markdown table (also written to ``--markdown FILE``). Not a
test: figures depend on the machine; see docs/benchmarks.md.

    .venv/bin/python bench/realtime.py [--stack embedded|scaled|both]
        [--connections 1000] [--pings 20] [--broadcasts 20]
        [--peers [--markdown FILE]]

Client and servers share the machine, so absolute figures include the
client's own cost; ratios compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jwt
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import node_peers, socketio_path
from bench.common import add_service_arguments, cpu_seconds, percentile
from devtools.servers import DaphneProcess, manage, server_environment

SECRET = uuid.uuid4().hex + uuid.uuid4().hex
PEERS = ("socketio", "ws")
TABS_PER_USER = 10
CONNECT_BATCH = 50


def token(user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


async def open_connections(url: str, users: list[str]) -> list[Any]:
    """Open one connection per entry of ``users``, CONNECT_BATCH at a time."""
    sockets: list[Any] = []

    async def one(user: str) -> Any:
        ws = await websockets.connect(f"{url}/ws?token={token(user)}", max_size=None, open_timeout=60)
        hello = json.loads(await ws.recv())
        assert hello["event"] == "connected", hello
        return ws

    for start in range(0, len(users), CONNECT_BATCH):
        sockets.extend(await asyncio.gather(*(one(u) for u in users[start : start + CONNECT_BATCH])))
    return sockets


async def reply_to(ws: Any, request_id: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if frame.get("id") == request_id:
            return frame


async def drain(ws: Any, quiet: float = 0.3) -> None:
    while True:
        try:
            await asyncio.wait_for(ws.recv(), quiet)
        except TimeoutError:
            return


async def ping_round(sockets: list[Any], pings: int) -> dict[str, float]:
    latencies: list[float] = []

    async def worker(ws: Any) -> None:
        for n in range(pings):
            sent = time.perf_counter()
            await ws.send(json.dumps({"event": "ping", "id": n}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if frame.get("id") == n:
                    if frame.get("event") != "pong":
                        raise RuntimeError(f"ping answered with {frame}")
                    break
            latencies.append((time.perf_counter() - sent) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker(ws) for ws in sockets))
    elapsed = time.perf_counter() - started
    return {
        "pings_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


def native_broadcast(raw: str, marker: str) -> bool:
    frame = json.loads(raw)
    return bool(frame.get("event") == "application_broadcast" and frame["data"].get("data", {}).get("marker") == marker)


async def fanout_rounds(
    subscribers: list[Any],
    broadcasts: int,
    trigger: Any,
    warmup: int,
    hit: Any = native_broadcast,
    *,
    pid: int | None = None,
) -> dict[str, float | None]:
    """Broadcasts to every subscriber; ``hit(frame, marker)`` recognises one
    (Socket.IO subscribers also get the server's pings, answered). The
    server's (``pid``, when given) CPU time per counted broadcast: its
    trigger and its deliveries."""
    latencies: list[float] = []
    firsts: list[float] = []
    delivered = 0
    busy = cpu = 0.0
    for n in range(-warmup, broadcasts):
        marker = f"b{n}-{uuid.uuid4().hex[:6]}"

        async def wait_for(ws: Any, marker: str = marker) -> float:
            while True:
                raw = await ws.recv()
                if raw == "2":
                    await ws.send("3")
                elif hit(raw, marker):
                    return time.perf_counter()

        waiters = [asyncio.create_task(wait_for(ws)) for ws in subscribers]
        await asyncio.sleep(0)
        cpu_before = cpu_seconds(pid) if pid else 0.0
        sent = time.perf_counter()
        await trigger(marker)
        finished, pending = await asyncio.wait(waiters, timeout=60)
        cpu_after = cpu_seconds(pid) if pid else 0.0
        if pending:
            for task in pending:
                task.cancel()
            raise RuntimeError(f"broadcast {n}: {len(pending)} of {len(waiters)} subscribers got nothing in 60 s")
        done = [task.result() for task in finished]
        if n < 0:
            continue  # warm-up round: first use of the HTTP path, not counted
        busy += max(done) - sent
        cpu += cpu_after - cpu_before
        firsts.append((min(done) - sent) * 1000)
        delivered += len(done)
        latencies.extend((t - sent) * 1000 for t in done)
    return {
        "deliveries_per_s": delivered / busy,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        # The first delivery of each broadcast, median: the trigger's own path.
        "first_ms": percentile(firsts, 50),
        "cpu_ms": cpu * 1000 / broadcasts if pid else None,
    }


def http_post(url: str, body: dict[str, Any], bearer: str) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202


async def measure(
    url: str, users: list[str], args: argparse.Namespace, endpoint: str | None, pid: int
) -> dict[str, Any]:
    """Native clients: connect, ping, fan-out. ``endpoint`` is the HTTP
    broadcast URL; None for the bare app, whose fan-out is asked for in-band.
    ``pid``: the server process, whose CPU time each phase takes is counted."""
    result: dict[str, Any] = {}
    started, cpu = time.perf_counter(), cpu_seconds(pid)
    sockets = await open_connections(url, users)
    result["connect_s"] = time.perf_counter() - started
    result["connect_cpu_ms"] = (cpu_seconds(pid) - cpu) * 1000 / len(sockets)
    # every connection answers: the server really holds them
    await ping_round(sockets, 1)
    result["connections_held"] = len(sockets)
    result["ping"] = await ping_round(sockets, args.pings)

    subscribers = sockets[: args.subscribers]
    if endpoint is None:
        sender = sockets[-1]

        async def trigger(marker: str) -> None:
            await sender.send(json.dumps({"event": "fanout", "data": {"message": "bench", "data": {"marker": marker}}}))

    else:
        for ws in subscribers:
            await ws.send(json.dumps({"event": "subscribe", "data": {"room": "application:app_bench"}, "id": "sub"}))
        replies = await asyncio.gather(*(reply_to(ws, "sub") for ws in subscribers))
        failed = [r for r in replies if r["event"] != "subscribed"]
        if failed:
            raise RuntimeError(f"{len(failed)} subscribes failed, e.g. {failed[0]}")
        await asyncio.gather(*(drain(ws, 1.0) for ws in subscribers))
        owner = token("bench_owner")

        async def trigger(marker: str) -> None:
            await asyncio.to_thread(http_post, endpoint, {"message": "bench", "data": {"marker": marker}}, owner)

    result["fanout"] = await fanout_rounds(subscribers, args.broadcasts, trigger, args.warmup, pid=pid)
    result["fanout"]["subscribers"] = len(subscribers)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return result


async def measure_socketio(
    url: str, users: list[str], args: argparse.Namespace, endpoint: str, pid: int
) -> dict[str, Any]:
    """Socket.IO clients, each open once the server's ``connected`` event has
    come: connect, then fan-out (broadcasts POSTed to ``endpoint``)."""
    started, cpu = time.perf_counter(), cpu_seconds(pid)
    sockets = await socketio_path.open_sockets(url, [token(u) for u in users[: args.subscribers]], connected=True)
    connect_s = time.perf_counter() - started
    connect_cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / len(sockets)
    await socketio_path.subscribe(sockets)
    owner = token("bench_owner")

    async def trigger(marker: str) -> None:
        await asyncio.to_thread(http_post, endpoint, {"message": "bench", "data": {"marker": marker}}, owner)

    result = await fanout_rounds(sockets, args.broadcasts, trigger, args.warmup, socketio_path.is_broadcast, pid=pid)
    result["subscribers"] = len(sockets)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return {
        "connect_s": connect_s,
        "connect_cpu_ms": connect_cpu_ms,
        "connections_held": len(sockets),
        "fanout": result,
    }


def measure_peer(peer: str, args: argparse.Namespace, users: list[str]) -> dict[str, Any]:
    """A peer (bench/node_peers.py) verifying the same tokens, driven by the
    Socket.IO clients (``socketio``) or the native ones (``ws``)."""
    process, port = node_peers.start(peer, {"JWT_SECRET": SECRET})
    url, endpoint = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}/broadcast"
    try:
        if peer == "socketio":
            return asyncio.run(measure_socketio(url, users, args, endpoint, process.pid))
        return asyncio.run(measure(url, users, args, endpoint, process.pid))
    finally:
        node_peers.stop(process)


SEED_BENCH = """
from accounts import services
from accounts.models import Application, Membership
app, _ = Application.objects.get_or_create(id="app_bench", defaults={{"name": "bench"}})
services.add_member(app, services.get_or_create_user("bench_owner"), Membership.Role.OWNER)
for i in range({users}):
    services.add_member(app, services.get_or_create_user(f"bench_u{{i}}"))
"""


def run_stack(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    users = [f"bench_u{i // TABS_PER_USER}" for i in range(args.connections)]
    extra = {
        # Throttles are exercised but set out of the way of the load.
        "LEDGERCORE_THROTTLE_RATES": "connection=100000/s,user=100000/s",
        "LOG_LEVEL": "WARNING",
    }
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {"dev_secret": SECRET, **extra}
        if stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcbench")
        with server_environment(Path(tmp), **kwargs) as env:
            manage(env, "shell", "-c", SEED_BENCH.format(users=len(set(users))))
            results = {}
            for name, app in (
                ("baseline", "bench.echo_app:application"),
                ("ledgercore", "ledgercore.asgi:application"),
                ("socketio", "ledgercore.asgi:application"),
            ):
                print(f"  {stack}: measuring {name}", file=sys.stderr, flush=True)
                server = DaphneProcess(env, Path(tmp) / f"{name}.log", app=app).start()
                assert server.process is not None
                pid = server.process.pid
                endpoint = f"{server.http}/api/applications/app_bench/broadcast"
                try:
                    if name == "socketio":
                        results[name] = asyncio.run(measure_socketio(server.url, users, args, endpoint, pid))
                    else:
                        results[name] = asyncio.run(
                            measure(server.url, users, args, None if name == "baseline" else endpoint, pid)
                        )
                except Exception:
                    errors = [line for line in server.logs().splitlines() if '"WS' not in line]
                    print(f"--- {name} server log, access lines left out ---", *errors[-60:], sep="\n", file=sys.stderr)
                    raise
                finally:
                    server.stop()
            for peer in PEERS if args.peers else ():
                print(f"  {stack}: measuring node-{peer}", file=sys.stderr, flush=True)
                results[f"node_{peer}"] = measure_peer(peer, args, users)
            return results


def report(stack: str, results: dict[str, Any], load: tuple[float, float]) -> None:
    ours, base = results["ledgercore"], results["baseline"]
    print(f"\n== {stack} stack ==")
    print(f"{'':28}{'ledgercore':>14}{'baseline':>14}{'ratio':>10}")

    def row(label: str, a: float, b: float, fmt: str = "{:.1f}") -> None:
        print(f"{label:28}{fmt.format(a):>14}{fmt.format(b):>14}{a / b if b else float('nan'):>10.2f}")

    row("connect s", ours["connect_s"], base["connect_s"], "{:.2f}")
    row("connections held", ours["connections_held"], base["connections_held"], "{:.0f}")
    row("pings/s", ours["ping"]["pings_per_s"], base["ping"]["pings_per_s"], "{:.0f}")
    row("ping p50 ms", ours["ping"]["p50_ms"], base["ping"]["p50_ms"])
    row("ping p99 ms", ours["ping"]["p99_ms"], base["ping"]["p99_ms"])
    row("fan-out deliveries/s", ours["fanout"]["deliveries_per_s"], base["fanout"]["deliveries_per_s"], "{:.0f}")
    row("fan-out p50 ms", ours["fanout"]["p50_ms"], base["fanout"]["p50_ms"])
    row("fan-out p99 ms", ours["fanout"]["p99_ms"], base["fanout"]["p99_ms"])
    row("fan-out max ms", ours["fanout"]["max_ms"], base["fanout"]["max_ms"])
    sio = results["socketio"]["fanout"]
    print(f"\nSocket.IO fan-out to {sio['subscribers']} subscribers")
    print(f"{'':28}{'socket.io':>14}{'native':>14}{'ratio':>10}")
    row("fan-out deliveries/s", sio["deliveries_per_s"], ours["fanout"]["deliveries_per_s"], "{:.0f}")
    row("fan-out p50 ms", sio["p50_ms"], ours["fanout"]["p50_ms"])
    row("fan-out p99 ms", sio["p99_ms"], ours["fanout"]["p99_ms"])
    print(f"1-minute load average {load[0]:.2f} at the start, {load[1]:.2f} at the end")
    print("json " + json.dumps({"stack": stack, "load": load, **results}))


# The peers table: its columns (results key, heading), the project / peer
# ratios (heading, project key, peer key) and its rows (label, figure, format).
PEER_COLUMNS = (
    ("ledgercore", "LedgerCore native"),
    ("socketio", "LedgerCore Socket.IO"),
    # The server's floor: bench/echo_app.py on the same daphne (fan-out asked
    # for in-band, not by HTTP).
    ("baseline", "bare app on daphne"),
)
PEER_RATIOS = (
    ("bare app on daphne / ws", "baseline", "node_ws"),
    ("native / ws", "ledgercore", "node_ws"),
    ("native / Node Socket.IO", "ledgercore", "node_socketio"),
    ("Socket.IO / Node Socket.IO", "socketio", "node_socketio"),
)
PEER_ROWS: tuple[tuple[str, Any, str], ...] = (
    ("clients connected", lambda r: r["connections_held"], "{:,.0f}"),
    ("time to connect them (s)", lambda r: r["connect_s"], "{:.2f}"),
    ("server CPU per connection (ms)", lambda r: r["connect_cpu_ms"], "{:.2f}"),
    ("fan-out deliveries/s", lambda r: r["fanout"]["deliveries_per_s"], "{:,.0f}"),
    ("fan-out p50 (ms)", lambda r: r["fanout"]["p50_ms"], "{:.1f}"),
    ("fan-out p99 (ms)", lambda r: r["fanout"]["p99_ms"], "{:.1f}"),
    ("first delivery, median (ms)", lambda r: r["fanout"]["first_ms"], "{:.1f}"),
    ("server CPU per broadcast (ms)", lambda r: r["fanout"]["cpu_ms"], "{:.1f}"),
    ("pings/s", lambda r: r["ping"]["pings_per_s"] if "ping" in r else None, "{:,.0f}"),
)


def peers_table(stack: str, results: dict[str, Any], load: tuple[float, float], args: argparse.Namespace) -> str:
    """The project against the peers measured in the same run, as markdown:
    figures, then project / peer ratios (above 1 is more for rates, slower
    for times)."""
    columns = [*PEER_COLUMNS, *((f"node_{peer}", node_peers.label(peer)) for peer in PEERS)]
    caption = (
        f"{stack} stack: fan-out of {args.broadcasts} broadcasts to {args.subscribers:,} subscribers, "
        f"{args.pings} pings per connection; 1-minute load average {load[0]:.2f} to {load[1]:.2f}"
    )
    lines = [
        caption,
        "",
        "| | " + " | ".join(title for _, title in columns) + " | " + " | ".join(t for t, _, _ in PEER_RATIOS) + " |",
        "|---|" + "---:|" * (len(columns) + len(PEER_RATIOS)),
    ]
    for label, figure, fmt in PEER_ROWS:
        values = {key: figure(results[key]) for key, _ in columns}
        cells = [fmt.format(values[key]) if values[key] is not None else "—" for key, _ in columns]
        for _, ours, peer in PEER_RATIOS:
            a, b = values[ours], values[peer]
            cells.append(f"{a / b:.2f}" if a is not None and b else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["embedded", "scaled", "both"], default="both")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--pings", type=int, default=20, help="sequential pings per connection")
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=1, help="uncounted broadcasts before the measured ones")
    parser.add_argument("--peers", action="store_true", help="also the Node.js Socket.IO and ws peers")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="with --peers: write the peers tables here")
    add_service_arguments(parser, worker=False)
    args = parser.parse_args()
    args.subscribers = min(args.subscribers, args.connections)
    if args.peers and (reason := node_peers.missing()) is not None:
        parser.error(f"--peers: {reason}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.connections + 1024)), hard))
    stacks = ["embedded", "scaled"] if args.stack == "both" else [args.stack]
    print(
        f"bench/realtime.py: {args.connections} connections ({TABS_PER_USER} per user), {args.pings} pings each, "
        f"{args.broadcasts} broadcasts to {args.subscribers} subscribers; one daphne process per server"
    )
    tables = []
    for stack in stacks:
        before = os.getloadavg()[0]
        results = run_stack(stack, args)
        load = (before, os.getloadavg()[0])
        report(stack, results, load)
        if args.peers:
            tables.append(peers_table(stack, results, load, args))
            print("\n" + tables[-1])
    if args.markdown and tables:
        args.markdown.write_text("\n\n".join(tables) + "\n")


if __name__ == "__main__":
    main()

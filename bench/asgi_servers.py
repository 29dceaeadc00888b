"""Which ASGI server: daphne against uvicorn, serving the same bare app.

Both servers run ``bench/echo_app.py`` (no authentication, registry, layer
or presence), one process each, one after the other in the same run, driven
by the same client. Figures:

- connect: N WebSocket handshakes, CONNECT_BATCH at a time, until each has
  its ``connected`` frame (handshakes/s);
- ping: 20 sequential pings per connection, all connections at once;
- fan-out: one frame to every connection, written by the server from process
  memory (deliveries/s and p99).

With ``--app ledgercore`` both serve the project's application on the
embedded stack instead (bench/realtime.py's measurement: authenticated
connections, a room broadcast through the channel layer).

It prints each server's figures and uvicorn's ratio to daphne's. Not a test:
figures depend on the machine; see docs/benchmarks.md.

    .venv/bin/python bench/asgi_servers.py [--connections 1000] [--ws websockets]
        [--app echo|ledgercore]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile
from devtools.servers import ROOT, free_port

CONNECT_BATCH = 50
APP = "bench.echo_app:application"


def start(command: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{command[2]} did not answer")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def connect_all(url: str, n: int) -> tuple[list[Any], float]:
    async def one() -> Any:
        ws = await websockets.connect(f"{url}/ws", max_size=None, open_timeout=60)
        assert json.loads(await ws.recv())["event"] == "connected"
        return ws

    sockets: list[Any] = []
    started = time.perf_counter()
    for offset in range(0, n, CONNECT_BATCH):
        sockets.extend(await asyncio.gather(*(one() for _ in range(min(CONNECT_BATCH, n - offset)))))
    return sockets, len(sockets) / (time.perf_counter() - started)


async def pings(sockets: list[Any], rounds: int) -> dict[str, float]:
    latencies: list[float] = []

    async def worker(ws: Any) -> None:
        for n in range(rounds):
            sent = time.perf_counter()
            await ws.send(json.dumps({"event": "ping", "id": n}))
            while json.loads(await ws.recv()).get("id") != n:
                pass
            latencies.append((time.perf_counter() - sent) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker(ws) for ws in sockets))
    return {"pings_per_s": len(latencies) / (time.perf_counter() - started), "p99_ms": percentile(latencies, 99)}


async def fanout(sockets: list[Any], rounds: int) -> dict[str, float]:
    latencies: list[float] = []
    busy = 0.0
    for n in range(-1, rounds):
        marker = f"m{n}"

        async def wait(ws: Any, marker: str = marker) -> float:
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("data", {}).get("marker") == marker:
                    return time.perf_counter()

        waiters = [asyncio.create_task(wait(ws)) for ws in sockets]
        await asyncio.sleep(0)
        sent = time.perf_counter()
        await sockets[0].send(json.dumps({"event": "fanout", "data": {"marker": marker}}))
        done = await asyncio.wait_for(asyncio.gather(*waiters), 60)
        if n < 0:
            continue
        busy += max(done) - sent
        latencies.extend((t - sent) * 1000 for t in done)
    return {"deliveries_per_s": len(latencies) / busy, "p99_ms": percentile(latencies, 99)}


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    sockets, rate = await connect_all(url, args.connections)
    result: dict[str, Any] = {"connects_per_s": rate}
    result["ping"] = await pings(sockets, args.pings)
    result["fanout"] = await fanout(sockets, args.broadcasts)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return result


async def measure_project_app(url: str, http: str, users: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from bench import realtime

    started = time.perf_counter()
    sockets = await realtime.open_connections(url, users)
    result: dict[str, Any] = {"connects_per_s": len(sockets) / (time.perf_counter() - started)}
    result["ping"] = await realtime.ping_round(sockets, args.pings)
    for ws in sockets:
        await ws.send(json.dumps({"event": "subscribe", "data": {"room": "application:app_bench"}, "id": "sub"}))
    await asyncio.gather(*(realtime.reply_to(ws, "sub") for ws in sockets))
    await asyncio.gather(*(realtime.drain(ws, 1.0) for ws in sockets))
    owner = realtime.token("bench_owner")

    async def trigger(marker: str) -> None:
        body = {"message": "bench", "data": {"marker": marker}}
        await asyncio.to_thread(realtime.http_post, f"{http}/api/applications/app_bench/broadcast", body, owner)

    result["fanout"] = await realtime.fanout_rounds(sockets, args.broadcasts, trigger, 1)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return result


def measure_project(servers: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The project's application on the embedded stack, per server."""
    import tempfile

    from bench import realtime

    users = [f"bench_u{i // realtime.TABS_PER_USER}" for i in range(args.connections)]
    extra = {"LEDGERCORE_THROTTLE_RATES": "connection=100000/s,user=100000/s", "LOG_LEVEL": "WARNING"}
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        realtime.server_environment(Path(tmp), dev_secret=realtime.SECRET, **extra) as env,
    ):
        realtime.manage(env, "shell", "-c", realtime.SEED_BENCH.format(users=len(set(users))))
        for name, command in servers.items():
            port = free_port()
            process = start(command(port, "ledgercore.asgi:application"), port, env)
            try:
                print(f"  measuring {name}", file=sys.stderr, flush=True)
                url, http = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
                results[name] = asyncio.run(measure_project_app(url, http, users, args))
            finally:
                stop(process)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--pings", type=int, default=20)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--ws", default="websockets", help="uvicorn's WebSocket implementation")
    parser.add_argument("--app", choices=["echo", "ledgercore"], default="echo")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.connections + 1024)), hard))
    py = sys.executable
    servers = {
        "daphne": lambda port, app: [py, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app],
        "uvicorn": lambda port, app: [
            py,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--ws",
            args.ws,
            "--log-level",
            "warning",
            "--no-access-log",
        ],
    }
    results: dict[str, Any] = {}
    if args.app == "ledgercore":
        results = measure_project(servers, args)
    else:
        for name, command in servers.items():
            port = free_port()
            process = start(command(port, APP), port)
            try:
                print(f"  measuring {name}", file=sys.stderr, flush=True)
                results[name] = asyncio.run(measure(f"ws://127.0.0.1:{port}", args))
            finally:
                stop(process)
    d, u = results["daphne"], results["uvicorn"]
    print(f"bench/asgi_servers.py: {args.connections} connections, {args.app} app, uvicorn --ws {args.ws}")
    print(f"{'':24}{'daphne':>12}{'uvicorn':>12}{'uvicorn/daphne':>16}")
    for label, a, b in (
        ("handshakes/s", d["connects_per_s"], u["connects_per_s"]),
        ("pings/s", d["ping"]["pings_per_s"], u["ping"]["pings_per_s"]),
        ("ping p99 ms", d["ping"]["p99_ms"], u["ping"]["p99_ms"]),
        ("fan-out deliveries/s", d["fanout"]["deliveries_per_s"], u["fanout"]["deliveries_per_s"]),
        ("fan-out p99 ms", d["fanout"]["p99_ms"], u["fanout"]["p99_ms"]),
    ):
        print(f"{label:24}{a:>12.1f}{b:>12.1f}{b / a:>16.2f}")
    print("json " + json.dumps(results))


if __name__ == "__main__":
    main()

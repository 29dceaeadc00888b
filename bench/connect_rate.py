"""Connection rate: the time to open N authenticated connections, the
project against a Node.js Socket.IO 4.8 server in the same run.

A connection counts once its client holds the server's ``connected`` event:
for the project, its token verified, its user known (tenancy bound), its
presence recorded (personal room joined) and its opening balance sent; for
the peers (bench/node_peers.py, with JWT_SECRET; ``make bench-peers``), its
HS256 token verified, its user looked up in memory and its personal room
joined. The clients are the same (``websockets``, CONNECT_BATCH handshakes
at a time, 10 connections per user), one after the other:

- ``node``: the Node.js Socket.IO peer;
- ``ws``: the bare ``ws`` peer (the native protocol's /ws);
- ``native``: the project's /ws on daphne (as ``make run``);
- ``socketio``: the project's /socket.io/ on the same server;
- ``echo``: the bare ASGI app (bench/echo_app.py) on daphne: what the
  ASGI server itself costs, without authentication.

Each is measured ``--rounds`` times (connections closed between rounds,
the rounds of the servers interleaved); the median time is reported with
the ratio to Node's. ``--profile DIR`` records py-spy's collapsed stacks of the
project's server during its first native round (``pip install py-spy``). Not a
test: figures depend on the machine; see docs/benchmarks.md.

    .venv/bin/python bench/connect_rate.py [--stack embedded|scaled|both]
        [--connections 1000] [--rounds 3] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import node_peers, realtime, socketio_path
from bench.common import add_service_arguments
from devtools.servers import DaphneProcess, manage, server_environment

CONNECT_BATCH = 50
Opener = Callable[[list[str]], Awaitable[list[Any]]]


async def timed(opener: Opener, users: list[str]) -> float:
    """Seconds to open one connection per user (each until ``connected``),
    then close them all."""
    started = time.perf_counter()
    sockets = await opener(users)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in sockets))
    return elapsed


def native_opener(url: str) -> Opener:
    async def opener(users: list[str]) -> list[Any]:
        return await realtime.open_connections(url, users)

    return opener


def echo_opener(url: str) -> Opener:
    async def one(_: str) -> Any:
        ws = await websockets.connect(f"{url}/ws", max_size=None, open_timeout=60)
        assert json.loads(await ws.recv())["event"] == "connected"
        return ws

    return batched(one)


def socketio_opener(url: str) -> Opener:
    async def opener(users: list[str]) -> list[Any]:
        tokens = [realtime.token(u) for u in users]
        return await socketio_path.open_sockets(url, tokens, CONNECT_BATCH, connected=True)

    return opener


def batched(one: Callable[[str], Awaitable[Any]]) -> Opener:
    async def opener(users: list[str]) -> list[Any]:
        sockets: list[Any] = []
        for start in range(0, len(users), CONNECT_BATCH):
            sockets.extend(await asyncio.gather(*(one(u) for u in users[start : start + CONNECT_BATCH])))
        return sockets

    return opener


def profiler(pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        print("  py-spy not found: pip install py-spy", file=sys.stderr)
        return None
    # Collapsed stacks per thread (flamegraph.pl or speedscope draw them;
    # grep sums them).
    command = [spy, "record", "--pid", str(pid), "--rate", "200", "--nonblocking", "--threads", "--format", "raw"]
    command += ["-o", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the storm starts
    return process


def run_stack(stack: str, args: argparse.Namespace) -> dict[str, list[float]]:
    users = [f"bench_u{i // realtime.TABS_PER_USER}" for i in range(args.connections)]
    extra = {"LEDGERCORE_THROTTLE_RATES": "connection=100000/s,user=100000/s", "LOG_LEVEL": "WARNING"}
    times: dict[str, list[float]] = {name: [] for name in ("node", "ws", "native", "socketio", "echo")}
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {"dev_secret": realtime.SECRET, **extra}
        if stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcbench")
        with server_environment(Path(tmp), **kwargs) as env:
            manage(env, "shell", "-c", realtime.SEED_BENCH.format(users=len(set(users))))
            node, port = node_peers.start("socketio", {"JWT_SECRET": realtime.SECRET})
            ws_peer, ws_port = node_peers.start("ws", {"JWT_SECRET": realtime.SECRET})
            project = DaphneProcess(env, Path(tmp) / "ledgercore.log").start()
            echo = DaphneProcess(env, Path(tmp) / "echo.log", app="bench.echo_app:application").start()
            openers = {
                "node": socketio_opener(f"ws://127.0.0.1:{port}"),
                "ws": native_opener(f"ws://127.0.0.1:{ws_port}"),
                "native": native_opener(project.url),
                "socketio": socketio_opener(project.url),
                "echo": echo_opener(echo.url),
            }
            try:
                # A first, unmeasured round: imports, caches and database
                # connections warm on every server.
                for opener in openers.values():
                    asyncio.run(timed(opener, users[: CONNECT_BATCH * 2]))
                for n in range(args.rounds):
                    for name, opener in openers.items():
                        spy = None
                        if args.profile and name == "native" and n == 0:
                            assert project.process is not None
                            spy = profiler(project.process.pid, args.profile / f"connect-{stack}.txt")
                        times[name].append(asyncio.run(timed(opener, users)))
                        if spy is not None:
                            spy.send_signal(signal.SIGINT)
                            spy.wait(timeout=60)
                        print(f"  {stack} round {n + 1}: {name} {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
            except Exception:
                print("--- ledgercore server log ---", *project.logs().splitlines()[-60:], sep="\n", file=sys.stderr)
                raise
            finally:
                project.stop()
                echo.stop()
                node_peers.stop(node)
                node_peers.stop(ws_peer)
    return times


def report(stack: str, connections: int, times: dict[str, list[float]]) -> None:
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n== {stack} stack: {connections} authenticated connections, median of {len(times['node'])} rounds ==")
    print(f"{'':34}{'seconds':>10}{'conn/s':>10}{'/ node':>10}")
    labels = {
        "node": f"{node_peers.label('socketio')} (peer)",
        "ws": f"{node_peers.label('ws')} (peer)",
        "native": "ledgercore /ws",
        "socketio": "ledgercore /socket.io/",
        "echo": "bare ASGI app, daphne (no auth)",
    }
    for name, label in labels.items():
        seconds = median[name]
        print(f"{label:34}{seconds:>10.2f}{connections / seconds:>10.0f}{seconds / median['node']:>10.2f}")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("json " + json.dumps({"stack": stack, "connections": connections, "seconds": times}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["embedded", "scaled", "both"], default="both")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="directory for py-spy flame graphs of the native rounds")
    add_service_arguments(parser, worker=False)
    args = parser.parse_args()
    if (reason := node_peers.missing()) is not None:
        parser.error(reason)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.connections + 1024)), hard))
    print(f"bench/connect_rate.py: {args.connections} connections ({realtime.TABS_PER_USER} per user)")
    for stack in ["embedded", "scaled"] if args.stack == "both" else [args.stack]:
        report(stack, args.connections, run_stack(stack, args))


if __name__ == "__main__":
    main()

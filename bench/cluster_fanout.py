"""Cluster fan-out: broadcasts to one room of subscribers split across two
server processes on the scaled stack (PostgreSQL + the Redis channel layer),
against one server process with all of them, in the same run.

Two daphne processes serve the project (``ledgercore.serve``, as ``make
run``), on ports of their own, sharing one database and one Redis prefix.
``--subscribers`` authenticated clients (10 connections per user, as
bench/realtime.py) join ``application:app_bench``; in the ``cluster`` setup
they alternate between the two servers, in the ``single`` one (the baseline,
measured first) all are on the first server. The clients run in
``--clients`` processes of their own (the ``websockets`` client of
bench/realtime.py; one Python process reading 20,000 frames a second is
itself near a core on this machine).

Broadcasts are POSTed to ``/api/applications/app_bench/broadcast`` (as
bench/realtime.py), alternating between the servers of the setup, each
carrying the wall clock time its POST started.
Each setup runs two phases after a warm-up:

- ``paced``: ``--rate`` broadcasts a second (20: the target's 20,000
  deliveries/s to 1,000 subscribers) for ``--seconds``;
- ``burst``: ``--burst`` broadcasts POSTed back to back: what the servers
  deliver when offered more.

Broadcasts are POSTed by ``--publishers`` threads (4), so at most that
many are in flight; a paced broadcast whose time has come waits for a free
one. Drops count against the broadcasts the servers accepted (202); those
refused are counted apart.

For each: deliveries/s (received / (last arrival - first send)), p50/p99/max
latency (arrival - the send time in the payload), drops (expected minus
received, per client, summed: must be 0), events out of the room's offset order or twice. The
ratios printed: deliveries/s / 20,000, p99 / 100 ms, and cluster / single.
``--profile DIR`` records py-spy (collapsed stacks, per thread) of each
server during the cluster setup's phases. Not a test: figures depend on the
machine; see docs/benchmarks.md.

    .venv/bin/python bench/cluster_fanout.py [--subscribers 1000] [--clients 2]
        [--rate 20] [--seconds 10] [--burst 200] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
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


from bench.common import add_service_arguments, percentile
from devtools.servers import DaphneProcess, manage, server_environment

ROOT = Path(__file__).resolve().parent.parent
ROOM = "application:app_bench"
TABS_PER_USER = 10
CONNECT_BATCH = 50
TARGET_RATE = 20_000.0
TARGET_P99_MS = 100.0
SEED = """
from accounts import services
from accounts.models import Application, Membership
app, _ = Application.objects.get_or_create(id="app_bench", defaults={{"name": "bench"}})
services.add_member(app, services.get_or_create_user("bench_owner"), Membership.Role.OWNER)
for i in range({users}):
    services.add_member(app, services.get_or_create_user(f"bench_u{{i}}"))
"""


def token(secret: str, user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + 3600}, secret, algorithm="HS256")


# --- the client processes ------------------------------------------------------------


class Subscriber:
    """One socket's count of a phase's events, and of those that came out
    of the room's offset order or twice."""

    __slots__ = ("disorder", "dupes", "last", "received")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.received = 0
        self.disorder = 0
        self.dupes = 0
        self.last = -1


class ClientWorker:
    """A client process: its share of the subscribers, driven by commands
    on stdin (one JSON line each), answered on stdout."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.sockets: list[Any] = []
        self.subscribers: list[Subscriber] = []
        self.readers: list[asyncio.Task[None]] = []
        self.phase = ""
        self.latencies: list[float] = []
        self.last_arrival = 0.0

    async def open(self) -> dict[str, Any]:
        secret = self.spec["secret"]

        async def one(url: str, user: str) -> Any:
            ws = await websockets.connect(f"{url}/ws?token={token(secret, user)}", max_size=None, open_timeout=120)
            hello = json.loads(await ws.recv())
            assert hello["event"] == "connected", hello
            await ws.send(json.dumps({"event": "subscribe", "data": {"room": ROOM}, "id": "sub"}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 120))
                if frame.get("id") == "sub":
                    if frame["event"] != "subscribed":
                        raise RuntimeError(f"subscribe failed: {frame}")
                    return ws

        started = time.perf_counter()
        targets = self.spec["targets"]
        for start in range(0, len(targets), CONNECT_BATCH):
            batch = targets[start : start + CONNECT_BATCH]
            self.sockets.extend(await asyncio.gather(*(one(url, user) for url, user in batch)))
        elapsed = time.perf_counter() - started
        self.subscribers = [Subscriber() for _ in self.sockets]
        self.readers = [
            asyncio.create_task(self.read(ws, sub)) for ws, sub in zip(self.sockets, self.subscribers, strict=True)
        ]
        return {"opened": len(self.sockets), "seconds": elapsed}

    async def read(self, ws: Any, sub: Subscriber) -> None:
        async for raw in ws:
            arrived = time.time()
            if '"application_broadcast"' not in raw:
                continue
            frame = json.loads(raw)
            data = frame["data"]["data"]
            if data.get("phase") != self.phase:
                continue
            offset = frame["offset"]
            if offset == sub.last:
                sub.dupes += 1
                continue
            if offset < sub.last:
                sub.disorder += 1
            sub.last = max(offset, sub.last)
            sub.received += 1
            self.latencies.append((arrived - data["ts"]) * 1000)
            self.last_arrival = arrived

    def arm(self, phase: str) -> dict[str, Any]:
        self.phase = phase
        self.latencies = []
        self.last_arrival = 0.0
        for sub in self.subscribers:
            sub.reset()
        return {"armed": phase}

    async def collect(self, expected: int, quiet: float) -> dict[str, Any]:
        """Once every socket has its ``expected`` events, or nothing more has
        come for ``quiet`` seconds."""
        total = expected * len(self.subscribers)
        seen, since = -1, time.monotonic()
        while True:
            received = sum(sub.received for sub in self.subscribers)
            if received >= total:
                break
            if received != seen:
                seen, since = received, time.monotonic()
            elif time.monotonic() - since > quiet:
                break
            await asyncio.sleep(0.05)
        self.phase = ""
        return {
            "received": [sub.received for sub in self.subscribers],
            "disorder": sum(sub.disorder for sub in self.subscribers),
            "dupes": sum(sub.dupes for sub in self.subscribers),
            "latencies": self.latencies,
            "last_arrival": self.last_arrival,
        }

    async def close(self) -> dict[str, Any]:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        return {"closed": len(self.sockets)}

    async def serve(self) -> None:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            name = command["command"]
            if name == "open":
                reply = await self.open()
            elif name == "arm":
                reply = self.arm(command["phase"])
            elif name == "collect":
                reply = await self.collect(command["expected"], command["quiet"])
            else:
                print(json.dumps(await self.close()), flush=True)
                return
            print(json.dumps(reply), flush=True)


def client_main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    spec = json.loads(sys.stdin.readline())
    asyncio.run(ClientWorker(spec).serve())


class Clients:
    """The client processes, commanded together."""

    def __init__(self, secret: str, shares: list[list[tuple[str, str]]]) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, __file__, "--client-process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
                text=True,
            )
            for _ in shares
        ]
        for process, share in zip(self.processes, shares, strict=True):
            self._write(process, {"secret": secret, "targets": share})

    @staticmethod
    def _write(process: subprocess.Popen[str], message: dict[str, Any]) -> None:
        assert process.stdin is not None
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()

    def command(self, **message: Any) -> list[dict[str, Any]]:
        for process in self.processes:
            self._write(process, message)
        replies = []
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"a client process exited (code {process.wait()})")
            replies.append(json.loads(line))
        return replies

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(BrokenPipeError):
                    self._write(process, {"command": "close"})
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- the coordinator -------------------------------------------------------------------


class Publisher:
    """Broadcasts POSTed to the servers in turn."""

    def __init__(self, servers: list[DaphneProcess], owner: str) -> None:
        self.endpoints = [f"{server.http}/api/applications/app_bench/broadcast" for server in servers]
        self.owner = owner

    def post(self, endpoint: str, data: dict[str, Any]) -> None:
        request = urllib.request.Request(
            endpoint,
            data=json.dumps({"message": "bench", "data": data}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.owner}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 202

    def run(self, phase: str, count: int, rate: float, threads: int) -> tuple[float, int]:
        """POST ``count`` broadcasts to the servers in turn from ``threads``
        publishers: ``rate`` a second (a broadcast waits for a free
        publisher), or back to back (rate 0). Each carries the time its POST
        starts. Returns the wall clock time of the first and how many the
        servers accepted (202)."""

        def one(n: int) -> bool:
            data = {"phase": phase, "seq": n, "ts": time.time()}
            try:
                self.post(self.endpoints[n % len(self.endpoints)], data)
            except (OSError, AssertionError) as exc:
                print(f"  broadcast {phase} {n} not accepted: {exc}", file=sys.stderr, flush=True)
                return False
            return True

        first = time.time()
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            posts = []
            for n in range(count):
                if rate:
                    delay = started + n / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                posts.append(pool.submit(one, n))
            accepted = sum(post.result() for post in posts)
        return first, accepted


def measure_phase(
    clients: Clients, publisher: Publisher, phase: str, count: int, rate: float, args: argparse.Namespace
) -> dict[str, Any]:
    clients.command(command="arm", phase=phase)
    load_before = os.getloadavg()[0]
    published = time.monotonic()
    first, accepted = publisher.run(phase, count, rate, args.publishers)
    publish_s = time.monotonic() - published
    replies = clients.command(command="collect", expected=accepted, quiet=args.quiet)
    received = [n for reply in replies for n in reply["received"]]
    latencies = [value for reply in replies for value in reply["latencies"]]
    last = max(reply["last_arrival"] for reply in replies)
    delivered = sum(received)
    return {
        "broadcasts": count,
        "refused": count - accepted,
        "offered_rate": rate,
        "published_per_s": count / publish_s,
        "subscribers": len(received),
        "delivered": delivered,
        "deliveries_per_s": delivered / (last - first) if delivered else 0.0,
        "drops": sum(accepted - n for n in received),
        "clients_short": sum(1 for n in received if n < accepted),
        "disorder": sum(reply["disorder"] for reply in replies),
        "dupes": sum(reply["dupes"] for reply in replies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "load": (load_before, os.getloadavg()[0]),
    }


def profilers(servers: list[DaphneProcess], directory: Path | None, setup: str) -> list[subprocess.Popen[bytes]]:
    if directory is None:
        return []
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        print("  py-spy not found: pip install py-spy", file=sys.stderr)
        return []
    started = []
    for n, server in enumerate(servers):
        assert server.process is not None
        command = [spy, "record", "--pid", str(server.process.pid), "--rate", "200", "--nonblocking", "--threads"]
        command += ["--format", "raw", "-o", str(directory / f"cluster-{setup}-server{n}.txt")]
        started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)
    return started


def run_setup(setup: str, servers: list[DaphneProcess], args: argparse.Namespace, secret: str) -> dict[str, Any]:
    """Connect the subscribers to ``servers`` (in turn), then the phases."""
    users = [f"bench_u{i // TABS_PER_USER}" for i in range(args.subscribers)]
    shares: list[list[tuple[str, str]]] = [[] for _ in range(args.clients)]
    for i, user in enumerate(users):
        shares[i % args.clients].append((servers[(i // args.clients) % len(servers)].url, user))
    clients = Clients(secret, shares)
    publisher = Publisher(servers, token(secret, "bench_owner"))
    result: dict[str, Any] = {"servers": len(servers)}
    try:
        opened = clients.command(command="open")
        result["connect_s"] = max(reply["seconds"] for reply in opened)
        result["connected"] = sum(reply["opened"] for reply in opened)
        measure_phase(clients, publisher, "warm", args.warmup, args.rate, args)
        spies = profilers(servers, args.profile, setup)
        try:
            result["paced"] = measure_phase(clients, publisher, "paced", int(args.rate * args.seconds), args.rate, args)
            print(f"  {setup}: paced {summary(result['paced'])}", file=sys.stderr, flush=True)
            result["burst"] = measure_phase(clients, publisher, "burst", args.burst, 0, args)
            print(f"  {setup}: burst {summary(result['burst'])}", file=sys.stderr, flush=True)
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
    finally:
        clients.close()
    return result


def summary(phase: dict[str, Any]) -> str:
    return (
        f"{phase['deliveries_per_s']:,.0f} deliveries/s, p50 {phase['p50_ms']:.1f} ms, p99 {phase['p99_ms']:.1f} ms,"
        f" drops {phase['drops']}, load {phase['load'][0]:.2f}-{phase['load'][1]:.2f}"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    users = len({i // TABS_PER_USER for i in range(args.subscribers)})
    extra = {"LEDGERCORE_THROTTLE_RATES": "connection=100000/s,user=100000/s", "LOG_LEVEL": "WARNING"}
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        server_environment(
            Path(tmp),
            dev_secret=secret,
            postgres_url=args.postgres,
            redis_url=args.redis,
            redis_prefix="lcbench",
            **extra,
        ) as env,
    ):
        manage(env, "shell", "-c", SEED.format(users=users))
        servers = [DaphneProcess(env, Path(tmp) / f"server{n}.log").start() for n in range(2)]
        try:
            for setup, chosen in (("single", servers[:1]), ("cluster", servers)):
                print(f"  measuring {setup} ({len(chosen)} server processes)", file=sys.stderr, flush=True)
                results[setup] = run_setup(setup, chosen, args, secret)
        except Exception:
            for n, server in enumerate(servers):
                errors = [line for line in server.logs().splitlines() if '"WS' not in line]
                print(f"--- server {n} log, access lines left out ---", *errors[-40:], sep="\n", file=sys.stderr)
            raise
        finally:
            for server in servers:
                server.stop()
    return results


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    single, cluster = results["single"], results["cluster"]
    print(
        f"\n== scaled stack: {args.subscribers} subscribers in one room, {args.clients} client processes;"
        f" paced {args.rate:g} broadcasts/s for {args.seconds:g} s, burst {args.burst} ==",
    )
    print(f"{'':34}{'2 processes':>14}{'1 process':>14}{'2 / 1':>10}")

    def row(label: str, a: float, b: float, fmt: str) -> None:
        print(f"{label:34}{fmt.format(a):>14}{fmt.format(b):>14}{a / b if b else float('nan'):>10.2f}")

    row("seconds to connect + subscribe", cluster["connect_s"], single["connect_s"], "{:.2f}")
    for phase in ("paced", "burst"):
        c, s = cluster[phase], single[phase]
        row(f"{phase}: broadcasts POSTed/s", c["published_per_s"], s["published_per_s"], "{:.1f}")
        row(f"{phase}: deliveries/s", c["deliveries_per_s"], s["deliveries_per_s"], "{:,.0f}")
        row(f"{phase}: p50 ms", c["p50_ms"], s["p50_ms"], "{:.1f}")
        row(f"{phase}: p99 ms", c["p99_ms"], s["p99_ms"], "{:.1f}")
        row(f"{phase}: max ms", c["max_ms"], s["max_ms"], "{:.1f}")
        for key in ("refused", "drops", "clients_short", "disorder", "dupes"):
            print(f"{phase + ': ' + key:34}{c[key]:>14}{s[key]:>14}")
        loads = ["{:.2f}-{:.2f}".format(*result["load"]) for result in (c, s)]
        print(f"{phase + ': 1-min load':34}{loads[0]:>14}{loads[1]:>14}")
    print("\nratios to the target (20,000 deliveries/s at p99 <= 100 ms, 0 drops):")
    for setup, result in (("2 processes", cluster), ("1 process", single)):
        for phase in ("paced", "burst"):
            r = result[phase]
            print(
                f"  {setup}, {phase}: deliveries/s {r['deliveries_per_s'] / TARGET_RATE:.2f},"
                f" p99 {r['p99_ms'] / TARGET_P99_MS:.2f}, drops {r['drops']}"
            )
    print("json " + json.dumps(results))


def main() -> None:
    if "--client-process" in sys.argv:
        client_main()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--rate", type=float, default=20, help="paced phase: broadcasts a second")
    parser.add_argument("--seconds", type=float, default=10, help="paced phase: its length")
    parser.add_argument("--burst", type=int, default=200, help="burst phase: broadcasts back to back")
    parser.add_argument("--publishers", type=int, default=4, help="publisher threads (POSTs in flight at most)")
    parser.add_argument("--warmup", type=int, default=5, help="uncounted broadcasts first")
    parser.add_argument("--quiet", type=float, default=10, help="seconds without an event that end a phase")
    parser.add_argument("--profile", type=Path, help="directory for py-spy's collapsed stacks of the servers")
    add_service_arguments(parser, worker=False)
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.subscribers + 1024)), hard))
    print(
        f"bench/cluster_fanout.py: {args.subscribers} subscribers ({TABS_PER_USER} per user) in {ROOM},"
        f" {args.clients} client processes; 1-minute load average {os.getloadavg()[0]:.2f}"
    )
    report(args, run(args))


if __name__ == "__main__":
    main()

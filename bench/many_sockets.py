"""Many sockets in one process: 10,000 WebSocket clients connected to one
server process, held idle, then reached by broadcasts; LedgerCore's native
endpoint against the Node.js Socket.IO peer (bench/node_peers.py; ``make
bench-peers``) in the same run.

    .venv/bin/python bench/many_sockets.py [--stack embedded|scaled]
        [--connections 10000] [--idle 300] [--broadcasts 3] [--no-node]

For each server, one process (daphne as ``make run``; ``node server.mjs``):

- **Connect**: ``--connections`` clients, ``--batch`` handshakes at a time;
  LedgerCore's are authenticated (a signed token of one of
  ``connections / --tabs-per-user`` users, the server verifies it, knows the user and
  records presence). Each client reads everything from then on and
  answers the server's pings but sends none of its own, as a browser: with
  10,000 sockets in one Python process, the load client reading millions of
  presence frames would time out its own pings and close (1006).
- **Subscribe**: every client subscribes to ``application:app_bench``,
  ``--batch`` at a time (LedgerCore tells the room each user who joins:
  ``user_joined_room``, counted as "other frames"; the Node server joins
  the room silently); then a wait until nothing has arrived for 5 s.
- **Memory**: the server's RSS (``/proc``) before the first client and
  after the last; the difference per connection.
- **Idle**: ``--idle`` seconds with every client connected and reading
  (Socket.IO clients answer the server's pings); the server's CPU time over
  that window as a share of one core, and the clients that were closed.
- **Broadcasts**: ``--broadcasts`` room events, one at a time (HTTP: the
  application broadcast endpoint; the Node server's ``/broadcast``); each
  must reach every client within 60 s. Deliveries per second and the
  clients each one missed.
- **Errors**: LedgerCore's log is searched for "closed protocol" (a send on
  a socket already gone).

Prints one table with both servers and the ratios. Not a test: figures
depend on the machine; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import node_peers, socketio_path
from bench.common import add_service_arguments, cpu_seconds
from devtools.servers import DaphneProcess, manage, server_environment

SECRET = uuid.uuid4().hex + uuid.uuid4().hex
ROOM = "application:app_bench"
PAGE = os.sysconf("SC_PAGE_SIZE")

SEED = """
from accounts import services
from accounts.models import Application, Membership
app, _ = Application.objects.get_or_create(id="app_bench", defaults={{"name": "bench"}})
services.add_member(app, services.get_or_create_user("bench_owner"), Membership.Role.OWNER)
for i in range({users}):
    services.add_member(app, services.get_or_create_user(f"bench_u{{i}}"))
"""


def token(user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + 7200}, SECRET, algorithm="HS256")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


class Clients:
    """The connected clients and what each has received."""

    def __init__(self, socketio: bool) -> None:
        self.socketio = socketio
        self.sockets: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []
        self.closed = 0
        self.close_codes: Counter[str] = Counter()
        self.seen: dict[str, int] = {}
        self.arrived: dict[str, asyncio.Event] = {}
        self.expected = 0
        self.other_frames = 0
        self.other_events: Counter[str] = Counter()
        self.acks = 0
        self.ack_arrived = asyncio.Event()

    def add(self, sockets: list[Any]) -> None:
        """Count ``sockets`` in and read them from now on: a client that
        stopped reading would be a slow consumer (and stop answering pings)."""
        self.sockets.extend(sockets)
        self.expected = len(self.sockets)
        self.readers.extend(asyncio.create_task(self._read(ws)) for ws in sockets)

    def _marker(self, packet: str) -> str | None:
        if self.socketio:
            if not packet.startswith('42["application_broadcast"'):
                return None
            data = json.loads(packet[2:])[1]
        else:
            frame = json.loads(packet)
            if frame.get("event") != "application_broadcast":
                return None
            data = frame["data"]
        marker = data.get("data", {}).get("marker")
        return marker if isinstance(marker, str) else None

    def _event(self, packet: str) -> str:
        if self.socketio:
            return packet[:2] if not packet.startswith("42") else str(json.loads(packet[2:])[0])
        return str(json.loads(packet).get("event"))

    def _ack(self, packet: str) -> bool:
        """Whether ``packet`` answers the subscription (refused: raises)."""
        if self.socketio:
            if not packet.startswith("431"):
                return False
            answer = json.loads(packet[3:])[0]
        else:
            if '"id":"s"' not in packet:
                return False
            answer = json.loads(packet)
        if answer.get("event") != "subscribed":
            raise RuntimeError(f"subscription refused: {packet}")
        return True

    async def subscribe_all(self, batch: int) -> None:
        """Every client subscribes to the room, ``batch`` at a time; returns
        once all are answered."""
        if self.socketio:
            request = '421["subscribe",' + json.dumps({"room": ROOM}) + "]"
        else:
            request = json.dumps({"event": "subscribe", "data": {"room": ROOM}, "id": "s"})
        for start in range(0, len(self.sockets), batch):
            await asyncio.gather(*(ws.send(request) for ws in self.sockets[start : start + batch]))
            while self.acks < min(start + batch, len(self.sockets)):
                self.ack_arrived.clear()
                await asyncio.wait_for(self.ack_arrived.wait(), 120)

    async def _read(self, ws: Any) -> None:
        try:
            async for packet in ws:
                if self.socketio and packet == "2":
                    await ws.send("3")
                    continue
                if self._ack(str(packet)):
                    self.acks += 1
                    self.ack_arrived.set()
                    continue
                marker = self._marker(str(packet))
                if marker is None:
                    self.other_frames += 1
                    self.other_events[self._event(str(packet))] += 1
                else:
                    count = self.seen[marker] = self.seen.get(marker, 0) + 1
                    if count == self.expected:
                        self.arrived[marker].set()
        except websockets.ConnectionClosed:
            pass
        self.closed += 1
        self.close_codes[f"{ws.close_code} {ws.close_reason or ''}".strip()] += 1

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


async def connect_native(url: str, count: int, batch: int, tabs: int) -> Clients:
    clients = Clients(socketio=False)

    async def one(index: int) -> Any:
        ws = await websockets.connect(
            f"{url}/ws?token={token(f'bench_u{index // tabs}')}",
            max_size=None,
            open_timeout=120,
            ping_interval=None,
        )
        hello = json.loads(await asyncio.wait_for(ws.recv(), 120))
        assert hello["event"] == "connected", hello
        return ws

    for start in range(0, count, batch):
        clients.add(await asyncio.gather(*(one(i) for i in range(start, min(count, start + batch)))))
    return clients


async def connect_socketio(url: str, count: int, batch: int) -> Clients:
    clients = Clients(socketio=True)
    for start in range(0, count, batch):
        clients.add(await socketio_path.open_sockets(url, ["-"] * min(batch, count - start), batch=batch))
    return clients


def post(url: str, body: dict[str, Any], bearer: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status in (200, 202), response.status


async def measure(
    pid: int,
    connect: Callable[[], Awaitable[Clients]],
    broadcast_url: str,
    bearer: str | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    rss_before = rss_mib(pid)
    started = time.perf_counter()
    clients = await connect()
    connect_s = time.perf_counter() - started
    started = time.perf_counter()
    await clients.subscribe_all(args.batch)
    subscribe_s = time.perf_counter() - started
    # The room's join announcements may still be on their way: the idle
    # window starts once nothing has arrived for 5 s.
    while True:
        before = clients.other_frames
        await asyncio.sleep(5)
        if clients.other_frames == before:
            break
    settle_s = time.perf_counter() - started - subscribe_s
    await asyncio.sleep(2)
    rss_connected = rss_mib(pid)
    done = f"{len(clients.sockets)} connected in {connect_s:.1f} s, subscribed in {subscribe_s:.1f} s"
    print(f"    {done}; idle {args.idle} s", file=sys.stderr, flush=True)
    cpu_before, idle_started = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(args.idle)
    idle_cpu = (cpu_seconds(pid) - cpu_before) / (time.perf_counter() - idle_started)
    closed_idle = clients.closed
    missed: list[int] = []
    durations: list[float] = []
    for index in range(args.broadcasts):
        marker = f"m{index}-{uuid.uuid4().hex[:6]}"
        clients.arrived[marker] = asyncio.Event()
        sent = time.perf_counter()
        await asyncio.to_thread(post, broadcast_url, {"message": "bench", "data": {"marker": marker}}, bearer)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(clients.arrived[marker].wait(), 60)
        durations.append(time.perf_counter() - sent)
        missed.append(clients.expected - clients.seen.get(marker, 0))
    rss_after = rss_mib(pid)
    await clients.close()
    delivered = sum(clients.expected - m for m in missed)
    return {
        "connected": len(clients.sockets),
        "connect_s": connect_s,
        "subscribe_s": subscribe_s,
        "settle_s": settle_s,
        "rss_before_mib": rss_before,
        "rss_connected_mib": rss_connected,
        "rss_after_mib": rss_after,
        "kib_per_connection": (rss_connected - rss_before) * 1024 / max(len(clients.sockets), 1),
        "idle_cpu_share": idle_cpu,
        "closed_while_idle": closed_idle,
        "close_codes": dict(clients.close_codes),
        "other_frames": clients.other_frames,
        "other_events": dict(clients.other_events),
        "missed_per_broadcast": missed,
        "deliveries_per_s": delivered / sum(durations) if durations else 0.0,
    }


def run_ledgercore(args: argparse.Namespace) -> dict[str, Any]:
    users = -(-args.connections // args.tabs_per_user)
    extra = {"LEDGERCORE_THROTTLE_RATES": "connection=100000/s,user=100000/s", "LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {"dev_secret": SECRET, **extra}
        if args.stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcmany")
        with server_environment(Path(tmp), **kwargs) as env:
            manage(env, "shell", "-c", SEED.format(users=users))
            server = DaphneProcess(env, Path(tmp) / "server.log").start()
            assert server.process is not None
            pid = server.process.pid
            try:
                result = asyncio.run(
                    measure(
                        pid,
                        lambda: connect_native(server.url, args.connections, args.batch, args.tabs_per_user),
                        f"{server.http}/api/applications/app_bench/broadcast",
                        token("bench_owner"),
                        args,
                    )
                )
            finally:
                server.stop()
            log = server.logs()
            if args.keep_log:
                Path(args.keep_log).write_text(log)
            result["closed_protocol_errors"] = log.count("closed protocol")
            result["tracebacks"] = log.count("Traceback (most recent call last)")
            return result


def run_node(args: argparse.Namespace) -> dict[str, Any]:
    process, port = node_peers.start("socketio")
    try:
        return asyncio.run(
            measure(
                process.pid,
                lambda: connect_socketio(f"ws://127.0.0.1:{port}", args.connections, args.batch),
                f"http://127.0.0.1:{port}/broadcast",
                None,
                args,
            )
        )
    finally:
        node_peers.stop(process)


def report(args: argparse.Namespace, ours: dict[str, Any], node: dict[str, Any] | None) -> None:
    print(
        f"\n{args.connections} sockets in one process ({args.stack} stack), idle {args.idle} s, "
        f"{args.broadcasts} broadcasts"
    )
    print("| figure | LedgerCore | Node.js Socket.IO 4.8 | ratio |\n|---|---:|---:|---:|")

    def row(label: str, key: str, fmt: str = "{:,.1f}") -> None:
        a = ours[key]
        b = node[key] if node else None
        ratio = f"{a / b:.2f}" if b else "—"
        print(f"| {label} | {fmt.format(a)} | {fmt.format(b) if b is not None else '—'} | {ratio} |")

    row("connected", "connected", "{:,}")
    row("time to connect (s)", "connect_s")
    row("time to subscribe all to the room (s)", "subscribe_s")
    row("then until the join announcements stop (s)", "settle_s")
    row("server RSS before (MiB)", "rss_before_mib")
    row("server RSS connected (MiB)", "rss_connected_mib")
    row("memory per connection (KiB)", "kib_per_connection")
    row("idle CPU (share of one core)", "idle_cpu_share", "{:.3f}")
    row("closed while idle", "closed_while_idle", "{:,}")
    row("broadcast deliveries/s", "deliveries_per_s", "{:,.0f}")
    row("other frames the clients received (presence)", "other_frames", "{:,}")
    print(f"| close codes the clients saw | {ours['close_codes']} | {node['close_codes'] if node else '—'} | |")
    print(
        f"| clients missed, per broadcast | {ours['missed_per_broadcast']} | "
        f"{node['missed_per_broadcast'] if node else '—'} | |"
    )
    print(
        f"| 'closed protocol' errors / tracebacks in the log | {ours['closed_protocol_errors']} / "
        f"{ours['tracebacks']} | | |"
    )
    print("json " + json.dumps({"stack": args.stack, "ledgercore": ours, "node_socketio": node}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["embedded", "scaled"], default="embedded")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="handshakes in flight at a time")
    parser.add_argument(
        "--tabs-per-user", type=int, default=10, help="connections per user (each user's first join is announced)"
    )
    parser.add_argument("--idle", type=float, default=300.0, help="seconds held idle")
    parser.add_argument("--broadcasts", type=int, default=3)
    parser.add_argument("--keep-log", metavar="PATH", help="copy LedgerCore's server log here")
    parser.add_argument("--no-node", action="store_true", help="measure LedgerCore only")
    add_service_arguments(parser, worker=False)
    args = parser.parse_args()
    if not args.no_node and (reason := node_peers.missing()) is not None:
        parser.error(f"{reason} (or --no-node)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.connections + 1024)), hard))
    print("  measuring ledgercore", file=sys.stderr, flush=True)
    ours = run_ledgercore(args)
    node = None
    if not args.no_node:
        print("  measuring node-socketio", file=sys.stderr, flush=True)
        node = run_node(args)
    report(args, ours, node)


if __name__ == "__main__":
    main()

"""Slow consumers: server memory and readers' latency while clients that
never read sit in a busy room.

Two runs on fresh daphne processes (devtools/publisher_app.py: the real application
plus an in-process publisher sending ``--rate`` broadcasts a second to
``application:app_bench`` through the channel layer). ``--readers``
WebSocket clients subscribe to that room and read everything, measuring each
event's latency (publisher's clock to arrival) and checking for gaps. In the
second run, ``--slow`` raw TCP clients (``SO_RCVBUF`` 4 KiB) complete the
handshake, subscribe to that room and to a live chart room of the demo feed
(``market:XRP-ETH:250ms``), and then never read. Each run lasts
``--seconds``; the server's RSS is sampled throughout, then the slow clients
are closed and RSS is read again after ``--settle`` seconds.

    .venv/bin/python bench/slow_consumers.py [--stack embedded|scaled]
        [--readers 5] [--slow 100] [--rate 1000] [--seconds 60]
        [--pad 64] [--limit-bytes N | --unbounded]

Prints, for each run: baseline RSS, peak and final growth, slow clients the
server closed (4008), readers' p50/p99 latency, events received and lost,
and the p99 ratio (with / without slow clients). Not a test: figures depend
on the machine; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import add_service_arguments, percentile
from devtools.rawws import RawWebSocket
from devtools.servers import DaphneProcess, manage, server_environment

ROOT = Path(__file__).resolve().parent.parent
SECRET = uuid.uuid4().hex + uuid.uuid4().hex
ROOM = "application:app_bench"
CHART = "market:XRP-ETH:250ms"
SEED = """
from accounts import services
from accounts.models import Application, Membership
app, _ = Application.objects.get_or_create(id="app_bench", defaults={{"name": "bench"}})
for name in {names!r}:
    services.add_member(app, services.get_or_create_user(name))
"""


def token(user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Reader:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.received = 0
        self.lost = 0
        self.skipped = 0
        # per publisher: its last seq and its running count of skipped events
        self.last_seq: dict[str, int] = {}
        self.last_skipped: dict[str, int] = {}
        self.recording = False

    async def run(self, ws: Any) -> None:
        async for raw in ws:
            arrived = time.time()
            frame = json.loads(raw)
            if frame.get("event") != "application_broadcast":
                continue
            data = frame["data"]
            seq, pub = data["seq"], data.get("pub", "server")
            # A gap in a publisher's seq is either events it skipped (it
            # fell over a second behind; its running count is in "skipped")
            # or events published and never delivered to this reader.
            skipped = data.get("skipped", 0) - self.last_skipped.get(pub, 0)
            last = self.last_seq.get(pub)
            if self.recording and last is not None and seq > last + 1:
                self.lost += seq - last - 1 - skipped
                self.skipped += skipped
            self.last_seq[pub] = seq
            self.last_skipped[pub] = data.get("skipped", 0)
            if self.recording:
                self.received += 1
                self.latencies.append((arrived - data["ts"]) * 1000)


def open_slow(port: int, users: list[str]) -> list[RawWebSocket]:
    sockets = []
    for user in users:
        ws = RawWebSocket("127.0.0.1", port, f"/ws?token={token(user)}", rcvbuf=4096, timeout=30)
        for n, room in enumerate((ROOM, CHART)):
            ws.send_event("subscribe", {"room": room}, f"s{n}")
            reply = ws.reply(f"s{n}", timeout=30)
            if reply["event"] != "subscribed":
                raise RuntimeError(f"slow client could not subscribe to {room}: {reply}")
        sockets.append(ws)  # and from now on it never reads
    return sockets


async def measure(server: DaphneProcess, args: argparse.Namespace, with_slow: bool) -> dict[str, Any]:
    assert server.process is not None
    pid = server.process.pid
    readers = [Reader() for _ in range(args.readers)]
    sockets = []
    for i in range(args.readers):
        ws = await websockets.connect(f"{server.url}/ws?token={token(f'bench_r{i}')}", max_size=None)
        await ws.send(json.dumps({"event": "subscribe", "data": {"room": ROOM}, "id": "s"}))
        sockets.append(ws)
    tasks = [asyncio.create_task(reader.run(ws)) for reader, ws in zip(readers, sockets, strict=True)]
    await asyncio.sleep(args.warmup)
    base = rss_mib(pid)
    slow: list[RawWebSocket] = []
    if with_slow:
        slow = await asyncio.to_thread(open_slow, server.port, [f"bench_s{i}" for i in range(args.slow)])
    for reader in readers:
        reader.recording = True
        reader.lost = 0
        reader.skipped = 0
    samples = []
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        await asyncio.sleep(0.5)
        samples.append(rss_mib(pid))
    for reader in readers:
        reader.recording = False
    for raw in slow:
        raw.close()
    after_close = []
    settle_start = time.monotonic()
    while time.monotonic() - settle_start < args.settle:
        await asyncio.sleep(0.5)
        after_close.append(rss_mib(pid))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    latencies = [value for reader in readers for value in reader.latencies]
    closed = server.logs().count("closing slow consumer")
    return {
        "rss_base": base,
        "rss_peak_growth": max(samples) - base,
        "rss_end_growth": samples[-1] - base,
        "rss_after_growth": after_close[-1] - base if after_close else float("nan"),
        "slow": len(slow),
        "closed_4008": closed,
        "received": sum(reader.received for reader in readers),
        "lost": sum(reader.lost for reader in readers),
        "skipped": max((reader.skipped for reader in readers), default=0),
        "rate": sum(reader.received for reader in readers) / max(1, len(readers)) / args.seconds,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }


def run_stack(stack: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    names = [f"bench_r{i}" for i in range(args.readers)] + [f"bench_s{i}" for i in range(args.slow)]
    extra = {
        "LEDGERCORE_THROTTLE_RATES": "connection=100000/s,user=100000/s",
        "LOG_LEVEL": "WARNING",
        "LEDGERCORE_MARKET_DEMO_FEED": "true",
        "LEDGERCORE_MARKET_REPLAY_SPEED": "600",
        "BENCH_PUBLISH_RATE": str(args.rate),
        "BENCH_PUBLISH_ROOM": ROOM,
        "BENCH_PUBLISH_PAD": str(args.pad),
    }
    if args.unbounded:
        # What the server did before outbound buffers were bounded.
        extra.update(LEDGERCORE_SEND_BUFFER_BYTES=str(2**40), LEDGERCORE_SEND_BUFFER_FRAMES=str(2**40))
    elif args.limit_bytes:
        extra.update(LEDGERCORE_SEND_BUFFER_BYTES=str(args.limit_bytes))
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {"dev_secret": SECRET, **extra}
        if stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcbench")
        with server_environment(Path(tmp), **kwargs) as env:
            manage(env, "shell", "-c", SEED.format(names=names))
            results = {}
            for name, with_slow in (("without", False), ("with", True)):
                print(f"  {stack}: run {name} slow clients", file=sys.stderr, flush=True)
                server_env = {**env, "BENCH_PUBLISH_RATE": "0"} if args.publishers else env
                server = DaphneProcess(
                    server_env, Path(tmp) / f"{name}.log", app="devtools.publisher_app:application"
                ).start()
                publishers = start_publishers(env, args, Path(tmp))
                try:
                    results[name] = asyncio.run(measure(server, args, with_slow))
                    print(f"  {stack}: {name}: {results[name]}", file=sys.stderr, flush=True)
                except Exception:
                    print(*server.logs().splitlines()[-60:], sep="\n", file=sys.stderr)
                    raise
                finally:
                    for publisher in publishers:
                        publisher.terminate()
                        publisher.wait(10)
                    server.stop()
            return results


def start_publishers(env: dict[str, str], args: argparse.Namespace, tmp: Path) -> list[subprocess.Popen[bytes]]:
    """``--publishers`` processes of their own (scaled stack), each offering
    an equal share of ``--rate``."""
    if not args.publishers:
        return []
    share = {**env, "BENCH_PUBLISH_RATE": str(args.rate / args.publishers)}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "devtools.publisher_app", f"p{n}"],
            env=share,
            cwd=ROOT,
            stdout=(tmp / f"publisher{n}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        for n in range(args.publishers)
    ]


def report(stack: str, args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    without, with_ = results["without"], results["with"]
    limit = "unbounded" if args.unbounded else f"limit {args.limit_bytes or 'default'} bytes"
    print(
        f"\n{stack}: {args.rate:g} events/s (pad {args.pad}) to {ROOM} for {args.seconds:g} s"
        f" from {args.publishers or 'the server'} {'publisher processes' if args.publishers else 'process'};"
        f" {args.readers} readers; {limit}"
    )
    print(f"| figure | without slow clients | with {args.slow} slow clients |")
    print("|---|---|---|")
    rows = [
        ("server RSS before (MiB)", "rss_base", "{:.1f}"),
        ("RSS growth, peak during the run (MiB)", "rss_peak_growth", "{:+.1f}"),
        ("RSS growth at the end of the run (MiB)", "rss_end_growth", "{:+.1f}"),
        (f"RSS growth {args.settle:g} s after the slow clients closed (MiB)", "rss_after_growth", "{:+.1f}"),
        ("slow clients closed by the server (4008)", "closed_4008", "{}"),
        ("events received per reader per second", "rate", "{:.0f}"),
        ("events the publisher skipped (over 1 s behind)", "skipped", "{}"),
        ("events lost by readers (published, not received)", "lost", "{}"),
        ("readers' p50 latency (ms)", "p50", "{:.1f}"),
        ("readers' p99 latency (ms)", "p99", "{:.1f}"),
    ]
    for label, key, fmt in rows:
        print(f"| {label} | {fmt.format(without[key])} | {fmt.format(with_[key])} |")
    print(f"\nreaders' p99 ratio (with / without): {with_['p99'] / without['p99']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["embedded", "scaled"], default="embedded")
    parser.add_argument("--readers", type=int, default=5)
    parser.add_argument("--slow", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--pad", type=int, default=64, help="padding characters per event (its size)")
    parser.add_argument("--limit-bytes", type=int, help="LEDGERCORE_SEND_BUFFER_BYTES for the server")
    parser.add_argument("--unbounded", action="store_true", help="no outbound limit (the behaviour before it)")
    parser.add_argument(
        "--publishers",
        type=int,
        default=0,
        help="publish from this many processes of their own (scaled stack) instead of inside the server",
    )
    add_service_arguments(parser, worker=False)
    args = parser.parse_args()
    if args.publishers and args.stack != "scaled":
        parser.error("--publishers needs --stack scaled (the embedded layer does not cross processes)")
    report(args.stack, args, run_stack(args.stack, args))


if __name__ == "__main__":
    main()

"""Recovery benchmark (scaled stack): how fast two server processes are
whole again after Redis comes back, and how fast presence converges after
churn.

Starts its own redis-server (no persistence) on a free port, a PostgreSQL
database of its own (dropped afterwards) and two daphne processes with the
default presence settings; connects ``--clients`` clients (half on each
process) to one application room plus an observer. Then, ``--restarts``
times: kills Redis, keeps it down ``--down`` seconds, starts it again and
measures from its return:

- presence exact: the room's connections and users in Redis equal the live
  clients (subscriberCount is read from there);
- first broadcast delivered: an HTTP application broadcast is posted every
  100 ms (503 UNAVAILABLE while Redis is down) until the observer receives
  one; also the first accepted (202) one, and how many accepted ones never
  arrived (sent to a group whose memberships were not re-added yet).

Finally ``--operations`` random join/leave/close/kill operations (as
tests/realtime/test_presence_churn.py) and the time from the last one until
presence is exact. Not a test: figures depend on the machine; see
docs/benchmarks.md.

    .venv/bin/python bench/recovery.py [--restarts 3] [--down 3] [--clients 40] [--operations 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import add_service_arguments, percentile
from devtools.redisprocs import RedisServer, fault_environment, room_presence, with_redis
from devtools.servers import DaphneProcess
from tests.wsclient import DEV_SECRET, Client, connected, dev_token

APP = "app_faults"
ROOM = f"application:{APP}"


def post_broadcast(http: str, token: str, seq: int) -> int:
    request = urllib.request.Request(
        f"{http}/api/applications/{APP}/broadcast",
        data=json.dumps({"message": f"b{seq}", "data": {"seq": seq}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


async def until_exact(store: Any, prefix: str, expected: tuple[int, dict[str, int]], start: float) -> float:
    while True:
        try:
            if await asyncio.to_thread(room_presence, store, prefix, ROOM) == expected:
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - Redis still starting
            pass
        await asyncio.sleep(0.05)


async def until_delivered(observer: Client, http: str, token: str, start: float) -> dict[str, Any]:
    accepted: dict[int, float] = {}
    first_accepted: float | None = None
    seq = 0
    while True:
        seq += 1
        status = await asyncio.to_thread(post_broadcast, http, token, seq)
        if status == 202:
            accepted[seq] = time.monotonic()
            if first_accepted is None:
                first_accepted = time.monotonic() - start
        deadline = time.monotonic() + 0.1
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = await observer.recv(timeout=left)
            except TimeoutError:
                break
            if frame["event"] == "application_broadcast":
                got = frame["data"]["data"]["seq"]
                lost = sum(1 for s in accepted if s < got)
                return {
                    "first_accepted_s": first_accepted,
                    "first_delivered_s": time.monotonic() - start,
                    "accepted_not_delivered": lost,
                }


async def restarts(
    args: argparse.Namespace, redis_server: RedisServer, env: dict[str, str], urls: list[str], https: list[str]
) -> list[dict[str, Any]]:
    prefix = env["LEDGERCORE_REDIS_PREFIX"]
    clients = []
    for i in range(args.clients):
        client = await connected(urls[i % 2], f"fu{1 + i % (args.users - 1)}", APP)
        reply = await client.request("subscribe", {"room": ROOM}, timeout=15)
        assert reply["event"] == "subscribed", reply
        clients.append(client)
    observer = await connected(urls[0], "fu0", APP)
    assert (await observer.request("subscribe", {"room": ROOM}))["event"] == "subscribed"
    users = Counter(f"fu{1 + i % (args.users - 1)}" for i in range(args.clients))
    users["fu0"] += 1
    expected = (args.clients + 1, dict(users))
    store = redis_server.client()
    token = dev_token("fu0", APP)
    results = []
    for _ in range(args.restarts):
        observer.backlog.clear()
        await asyncio.to_thread(redis_server.kill)
        await asyncio.sleep(args.down)
        await asyncio.to_thread(redis_server.start)
        start = time.monotonic()
        store = redis_server.client()
        presence, delivery = await asyncio.gather(
            until_exact(store, prefix, expected, start), until_delivered(observer, https[1], token, start)
        )
        alive = sum(1 for c in clients if c.ws.close_code is None)
        results.append({"presence_exact_s": presence, **delivery, "sockets_open": alive, "sockets": len(clients)})
        print(json.dumps(results[-1]), flush=True)
        await asyncio.sleep(2)
    for client in [*clients, observer]:
        await client.close()
    return results


async def churn(
    args: argparse.Namespace, redis_server: RedisServer, env: dict[str, str], urls: list[str]
) -> dict[str, Any]:
    from tests.test_presence_churn import Model, worker

    prefix = env["LEDGERCORE_REDIS_PREFIX"]
    model = Model()
    rng = random.Random(13)
    started = time.monotonic()
    await asyncio.gather(*(worker(i, random.Random(rng.random()), urls, model, args.operations // 4) for i in range(4)))
    last = time.monotonic()
    in_room = Counter(c.user for c in model.open if c.in_room)
    converged = await until_exact(redis_server.client(), prefix, (sum(in_room.values()), dict(in_room)), last)
    return {
        "operations": sum(model.counts.values()),
        "operations_s": round(last - started, 1),
        "converged_after_last_s": converged,
        "mix": dict(model.counts),
    }


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    redis_server = RedisServer(tmp).start()
    try:
        with fault_environment(
            tmp,
            args.postgres,
            users=args.users + 1,
            app=APP,
            dev_secret=DEV_SECRET,
            LEDGERCORE_THROTTLE_RATES="connection=1000/s,user=1000/s",
            LOG_LEVEL="WARNING",
        ) as base:
            env = with_redis(base, redis_server.url)
            servers = [DaphneProcess(env, tmp / f"daphne-{i}.log") for i in range(2)]
            await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
            try:
                urls = [s.url for s in servers]
                https = [s.http for s in servers]
                recovered = await restarts(args, redis_server, env, urls, https)
                churned = await churn(args, redis_server, env, urls) if args.operations else None
            finally:
                for server in servers:
                    server.stop()
    finally:
        redis_server.kill()

    def summary(key: str) -> dict[str, float]:
        values = [r[key] for r in recovered if r[key] is not None]
        return {"median": round(percentile(values, 50), 2), "max": round(max(values), 2)}

    return {
        "restarts": len(recovered),
        "down_s": args.down,
        "clients": args.clients,
        "presence_exact_s": summary("presence_exact_s"),
        "first_accepted_s": summary("first_accepted_s"),
        "first_delivered_s": summary("first_delivered_s"),
        "accepted_not_delivered": sum(r["accepted_not_delivered"] for r in recovered),
        "sockets_closed": sum(r["sockets"] - r["sockets_open"] for r in recovered),
        "churn": churned,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_arguments(parser, worker=False)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--down", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--operations", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(asyncio.run(run(args, Path(tmp))), indent=2))


if __name__ == "__main__":
    main()

"""Presence stays exact under churn: 1,000 random joins, leaves, closes and
abrupt TCP kills (some racing a join still in flight) by clients spread
over two daphne processes sharing a Redis of the test's own.

Within 30 s of the last operation every room's count in Redis and the
``subscriberCount`` a newcomer gets equal the true number of open
connections in it, no phantom member remains, and an observer has seen one
``user_left_room`` for each departure (joins minus leaves equals presence
at the end, per user).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from devtools.redisprocs import RedisServer
from tests.redisfaults import APP, ROOM, database_env, start_servers, stop_servers, wait_presence, with_redis
from tests.wsclient import Client, connected

pytestmark = pytest.mark.redis_stack

OPERATIONS = 1000
WORKERS = 4
USERS = 10
MIN_OPEN_PER_WORKER = 4


@dataclass(eq=False)
class Conn:
    user: str
    client: Client
    in_room: bool = False


@dataclass
class Model:
    open: list[Conn] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


async def expect_reply(client: Client, request_id: str, event: str) -> None:
    """The frame answering ``request_id`` is ``event`` (others are kept)."""
    deadline = time.monotonic() + 20
    while True:
        for index, frame in enumerate(client.backlog):
            if frame.get("id") == request_id:
                client.backlog.pop(index)
                assert frame["event"] == event, frame
                return
        assert time.monotonic() < deadline, f"no answer to {request_id}"
        raw = await asyncio.wait_for(client.ws.recv(), max(deadline - time.monotonic(), 0.01))
        client.backlog.append(json.loads(raw))


async def worker(index: int, rng: random.Random, urls: list[str], model: Model, operations: int) -> None:
    mine: list[Conn] = []

    def drop(conn: Conn) -> None:
        mine.remove(conn)
        model.open.remove(conn)

    async def connect() -> None:
        user = f"fu{rng.randrange(USERS)}"
        conn = Conn(user, await connected(rng.choice(urls), user, APP))
        mine.append(conn)
        model.open.append(conn)

    for n in range(operations):
        # Connections are opened as needed (not counted as operations).
        missing = MIN_OPEN_PER_WORKER - len(mine)
        if missing > 0:
            await asyncio.gather(*(connect() for _ in range(missing)))
        joined = [c for c in mine if c.in_room]
        outside = [c for c in mine if not c.in_room]
        choices = ["close", "kill"]
        if outside:
            choices += ["join"] * 5 + ["join_then_kill", "join_then_leave"]
        if joined:
            choices += ["leave"] * 4
        op = rng.choice(choices)
        request_id = f"w{index}-{n}"
        if op == "join":
            conn = rng.choice(outside)
            await conn.client.send("subscribe", {"room": ROOM}, request_id)
            await expect_reply(conn.client, request_id, "subscribed")
            conn.in_room = True
        elif op == "leave":
            conn = rng.choice(joined)
            await conn.client.send("unsubscribe", {"room": ROOM}, request_id)
            await expect_reply(conn.client, request_id, "unsubscribed")
            conn.in_room = False
        elif op == "join_then_leave":
            # The leave arrives while the join is still being processed.
            conn = rng.choice(outside)
            await conn.client.send("subscribe", {"room": ROOM}, request_id + "j")
            await conn.client.send("unsubscribe", {"room": ROOM}, request_id + "l")
            await expect_reply(conn.client, request_id + "l", "unsubscribed")
        elif op == "join_then_kill":
            # The socket dies (no close frame) right after asking to join.
            conn = rng.choice(outside)
            await conn.client.send("subscribe", {"room": ROOM}, request_id)
            conn.client.ws.transport.abort()
            drop(conn)
        elif op == "kill":
            conn = rng.choice(mine)
            conn.client.ws.transport.abort()
            drop(conn)
        else:  # close
            conn = rng.choice(mine)
            await conn.client.close()
            drop(conn)
        model.counts[op] += 1


async def record(observer: Client, frames: list[dict[str, Any]]) -> None:
    while True:
        frames.append(await observer.recv(timeout=3600))


async def test_presence_is_exact_after_a_thousand_random_operations_on_two_processes(tmp_path):
    redis_server = RedisServer(tmp_path).start()
    with database_env(
        tmp_path,
        users=USERS + 2,
        LEDGERCORE_PRESENCE_TIMEOUT_SECONDS="3",
        LEDGERCORE_THROTTLE_RATES="connection=1000/s,user=1000/s",
    ) as base:
        env = with_redis(base, redis_server.url)
        prefix = env["LEDGERCORE_REDIS_PREFIX"]
        servers = await start_servers(env, tmp_path)
        urls = [server.url for server in servers]
        store = redis_server.client()
        observer = await connected(urls[0], f"fu{USERS}", APP)
        frames: list[dict[str, Any]] = []
        recorder = None
        try:
            reply = await observer.request("subscribe", {"room": ROOM})
            assert reply["data"]["subscriberCount"] == 1, reply
            recorder = asyncio.create_task(record(observer, frames))
            model = Model()
            rng = random.Random(13)
            await asyncio.gather(
                *(worker(i, random.Random(rng.random()), urls, model, OPERATIONS // WORKERS) for i in range(WORKERS))
            )
            assert sum(model.counts.values()) == OPERATIONS
            assert model.counts["kill"] + model.counts["join_then_kill"] > 50, model.counts
            last_operation = time.monotonic()

            in_room = Counter(c.user for c in model.open if c.in_room)
            in_room[f"fu{USERS}"] += 1  # the observer
            await wait_presence(store, prefix, ROOM, sum(in_room.values()), dict(in_room), timeout=30)
            connections = Counter(c.user for c in model.open)
            for n in range(USERS):
                user = f"fu{n}"
                expected = {user: connections[user]} if connections[user] else {}
                remaining = max(30 - (time.monotonic() - last_operation), 1)
                await wait_presence(store, prefix, f"user:{user}", connections[user], expected, timeout=remaining)

            # One user_left_room per departure: per user, the announced
            # joins minus leaves is 1 if the user is in the room, else 0.
            def balance() -> dict[str, int]:
                net: Counter[str] = Counter()
                for frame in frames:
                    if frame["event"] == "user_joined_room":
                        net[frame["data"]["userId"]] += 1
                    elif frame["event"] == "user_left_room":
                        net[frame["data"]["userId"]] -= 1
                return {user: n for user, n in net.items() if n}

            expected_net = {user: 1 for user in in_room if user != f"fu{USERS}"}
            deadline = last_operation + 30
            while balance() != expected_net and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert balance() == expected_net, (model.counts, balance(), expected_net)

            # The count a newcomer is told is the true one.
            late = await connected(urls[1], f"fu{USERS + 1}", APP)
            reply = await late.request("subscribe", {"room": ROOM})
            assert reply["data"]["subscriberCount"] == sum(in_room.values()) + 1, reply
            for server in servers:
                assert "Traceback" not in server.logs(), server.logs()[-3000:]
        finally:
            if recorder is not None:
                recorder.cancel()
            stop_servers(servers)
            redis_server.kill()

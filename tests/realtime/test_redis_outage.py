"""Redis outages with real processes: two daphne servers on a Redis of the
test's own (never the shared one), killed and restarted while clients are
connected.

What must hold (issue 13): sockets stay open; a request that needs Redis
fails fast with UNAVAILABLE and retryAfter while it is down; presence is
rebuilt from the live connections (exact counts, no phantom member) within
10 s of its return; a user who left during the outage is announced once; a
ledger event is not lost across a failover.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from devtools.redisprocs import RedisServer
from tests.redisfaults import (
    APP,
    ROOM,
    fault_env_fixture,
    join,
    ping_until_pong,
    start_servers,
    stop_servers,
    wait_presence,
    with_redis,
)
from tests.wsclient import Client, connected

pytestmark = pytest.mark.redis_stack
fault_env = fault_env_fixture("redis-outage", users=10, presence_timeout_seconds=2)


def presence_events(client: Client, event: str) -> Counter[str]:
    return Counter(f["data"]["userId"] for f in client.backlog if f["event"] == event and f["data"]["room"] == ROOM)


async def drain(client: Client, seconds: float) -> None:
    """Move every frame arriving within ``seconds`` to the backlog."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = await client.recv(timeout=left)
        except TimeoutError:
            return
        client.backlog.append(frame)


async def test_redis_restart_keeps_sockets_answers_unavailable_and_rebuilds_presence(fault_env, tmp_path):
    redis_server = RedisServer(tmp_path).start()
    env = with_redis(fault_env, redis_server.url)
    prefix = env["LEDGERCORE_REDIS_PREFIX"]
    servers = await start_servers(env, tmp_path)
    a, b = (server.url for server in servers)
    store = redis_server.client()
    try:
        # fu0 has a connection on each process; the observers fu5 (A) and
        # fu6 (B) see presence events.
        layout = [("fu0", a), ("fu0", b), ("fu1", a), ("fu2", b), ("fu3", a), ("fu4", b), ("fu5", a), ("fu6", b)]
        clients = [await connected(url, user, APP) for user, url in layout]
        for client in clients:
            await join(client)
        observer_a, observer_b = clients[6], clients[7]
        await wait_presence(store, prefix, ROOM, 8, {f"fu{i}": 2 if i == 0 else 1 for i in range(7)}, timeout=10)
        for client in clients:
            client.backlog.clear()

        await asyncio.to_thread(redis_server.kill)
        # A request that needs Redis (every request passes the per-user
        # throttle) fails fast with UNAVAILABLE and retryAfter.
        for client in (clients[2], clients[3]):
            started = time.monotonic()
            reply = await client.request("ping", timeout=10)
            assert reply["event"] == "error", reply
            assert reply["data"]["code"] == "UNAVAILABLE" and reply["data"]["retryAfter"] >= 1, reply
            assert time.monotonic() - started < 5
        reply = await clients[4].request("subscribe", {"room": ROOM})
        assert reply["data"]["code"] == "UNAVAILABLE", reply
        # While Redis is down: fu2 leaves for good (closes), fu0 closes one
        # of its two connections, fu7 connects on A.
        await clients[3].close()
        await clients[1].close()
        newcomer = await connected(a, "fu7", APP)
        await asyncio.sleep(2)
        await asyncio.to_thread(redis_server.start)
        store = redis_server.client()

        # Every other socket stayed open and answers again.
        alive = [c for i, c in enumerate(clients) if i not in (1, 3)] + [newcomer]
        for client in alive:
            await ping_until_pong(client, timeout=10)
            assert client.ws.close_code is None
        # Presence rebuilt from the live connections within 10 s: fu2 gone,
        # fu0 once, no phantom.
        expected = {"fu0": 1, "fu1": 1, "fu3": 1, "fu4": 1, "fu5": 1, "fu6": 1}
        await wait_presence(store, prefix, ROOM, 6, expected, timeout=10)
        # The newcomer's personal room (joined while Redis was down) is
        # registered and its group re-added: a broadcast reaches it.
        await wait_presence(store, prefix, "user:fu7", 1, {"fu7": 1}, timeout=10)
        assert await join(newcomer) == 7
        for observer in (observer_a, observer_b):
            await observer.expect("user_joined_room", timeout=10, userId="fu7")

        # fu2's departure is announced once on both processes; fu0 (still
        # connected) is not announced as gone.
        for observer in (observer_a, observer_b):
            await observer.expect("user_left_room", timeout=15, userId="fu2")
        for observer in (observer_a, observer_b):
            await drain(observer, 2.0)
            assert presence_events(observer, "user_left_room") == Counter(), observer.backlog
        # A new connection counts exactly.
        late = await connected(b, "fu8", APP)
        assert await join(late) == 8
        for server in servers:
            assert "Traceback" not in server.logs(), server.logs()[-3000:]
    finally:
        stop_servers(servers)
        redis_server.kill()


async def test_outage_longer_than_the_presence_timeout_on_a_persistent_redis_sweeps_no_live_process(
    fault_env, tmp_path
):
    """Redis comes back with its data (append-only file) after 3.5 s, longer
    than the presence timeout (2 s): every heartbeat in it is stale, yet no
    live process is swept; the memberships of connections that closed
    meanwhile are dropped and announced once."""
    redis_server = RedisServer(tmp_path, persistent=True).start()
    env = with_redis(fault_env, redis_server.url)
    prefix = env["LEDGERCORE_REDIS_PREFIX"]
    servers = await start_servers(env, tmp_path)
    a, b = (server.url for server in servers)
    try:
        layout = [("fu0", a), ("fu0", b), ("fu1", a), ("fu2", b), ("fu5", a), ("fu6", b)]
        clients = [await connected(url, user, APP) for user, url in layout]
        for client in clients:
            await join(client)
        observer_a, observer_b = clients[4], clients[5]
        expected = {"fu0": 2, "fu1": 1, "fu2": 1, "fu5": 1, "fu6": 1}
        await wait_presence(redis_server.client(), prefix, ROOM, 6, expected, timeout=10)
        await asyncio.sleep(0.5)
        for client in clients:
            client.backlog.clear()

        await asyncio.to_thread(redis_server.kill)
        await clients[3].close()  # fu2 leaves for good
        await clients[1].close()  # fu0 keeps its connection on A
        await asyncio.sleep(3.5)
        await asyncio.to_thread(redis_server.start)
        store = redis_server.client()

        for client in (clients[0], clients[2], observer_a, observer_b):
            await ping_until_pong(client, timeout=10)
        await wait_presence(store, prefix, ROOM, 4, {"fu0": 1, "fu1": 1, "fu5": 1, "fu6": 1}, timeout=10)
        for observer in (observer_a, observer_b):
            await observer.expect("user_left_room", timeout=15, userId="fu2")
        # Past the point where the stale heartbeats would have been swept:
        # nobody else is announced as gone, fu2 not twice.
        for observer in (observer_a, observer_b):
            await drain(observer, 3.0)
            assert presence_events(observer, "user_left_room") == Counter(), observer.backlog
        await wait_presence(store, prefix, ROOM, 4, {"fu0": 1, "fu1": 1, "fu5": 1, "fu6": 1}, timeout=1)
        for server in servers:
            assert "Traceback" not in server.logs(), server.logs()[-3000:]
    finally:
        stop_servers(servers)
        redis_server.kill()

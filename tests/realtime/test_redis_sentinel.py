"""Redis high availability with real processes: a primary, a replica and a
Sentinel (``redis-server --sentinel``) of the test's own; two daphne
servers configured with LEDGERCORE_REDIS_SENTINELS. The primary is killed
while clients are connected: sockets stay, presence is exact on the
promoted replica, and a ledger event committed during the failover is
delivered (through the outbox once the new primary answers).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from devtools.redisprocs import RedisServer, Sentinel
from devtools.servers import manage
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
from tests.wsclient import connected

pytestmark = pytest.mark.redis_stack
fault_env = fault_env_fixture("redis-sentinel", users=4, presence_timeout_seconds=3)


async def test_sentinel_failover_keeps_sockets_and_delivers_the_ledger_event(fault_env, tmp_path):
    primary = RedisServer(tmp_path).start()
    replica = RedisServer(tmp_path, replica_of=primary).start()
    sentinel = Sentinel(tmp_path, primary, down_after_ms=1000).start()
    env = with_redis(
        fault_env,
        "",
        LEDGERCORE_REDIS_SENTINELS=sentinel.address,
        LEDGERCORE_REDIS_SENTINEL_MASTER=sentinel.master_name,
    )
    prefix = env["LEDGERCORE_REDIS_PREFIX"]
    servers = await start_servers(env, tmp_path)
    a, b = (server.url for server in servers)
    try:
        await asyncio.to_thread(replica.wait_synced)
        await asyncio.to_thread(sentinel.wait_replicas, 1)
        on_a = await connected(a, "fu0", APP)
        on_b = await connected(b, "fu1", APP)
        await join(on_a)
        assert await join(on_b) == 2
        await on_a.expect("user_joined_room", userId="fu1")
        balance = on_b.balance["data"]["newBalance"]  # type: ignore[attr-defined]
        await asyncio.to_thread(time.sleep, 0.5)  # the replica has the memberships

        await asyncio.to_thread(primary.kill)
        # A grant committed while the primary is gone: its events are sent
        # through the outbox once the replica is promoted.
        grant = asyncio.create_task(
            asyncio.to_thread(
                manage,
                env,
                "shell",
                "-c",
                "from accounts.services import get_or_create_user as u\n"
                "from credits import services as c\n"
                f"c.grant_credits(u('fu1').pk, '{APP}', 7, reason='failover', actor=c.Actor.system())\n",
            )
        )
        await asyncio.to_thread(sentinel.wait_primary, replica.port)
        await grant
        update = await on_b.expect("credit_balance_updated", timeout=30, newBalance=balance + 7)
        assert update["data"]["applicationId"] == APP
        for client in (on_a, on_b):
            await ping_until_pong(client, timeout=15)
            assert client.ws.close_code is None
        # Presence on the promoted replica is exact and broadcasts cross
        # processes again.
        await wait_presence(replica.client(), prefix, ROOM, 2, {"fu0": 1, "fu1": 1}, timeout=10)
        third = await connected(a, "fu2", APP)
        assert await join(third) == 3
        await on_b.expect("user_joined_room", timeout=10, userId="fu2")
    finally:
        stop_servers(servers)
        for process in (sentinel, replica, primary):
            process.kill()

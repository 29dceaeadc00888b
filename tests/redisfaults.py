"""Shared pieces of the Redis fault tests: a migrated PostgreSQL database of
their own (no demo data: only users of one application), server processes
pointed at a Redis of the test's own, and reading presence straight from
Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from devtools.servers import DaphneProcess, manage
from tests.wsclient import DEV_SECRET, Client

APP = "app_faults"
ROOM = f"application:{APP}"

SETUP_USERS = """
from accounts import services
from accounts.models import Application
app, _ = Application.objects.get_or_create(id="{app}", defaults={{"name": "faults"}})
for i in range({count}):
    services.add_member(app, services.get_or_create_user(f"fu{{i}}"))
"""


def maintenance_url() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"


@contextlib.contextmanager
def database_env(tmp: Path, users: int, **extra: str) -> Iterator[dict[str, str]]:
    """Environment for server processes on a new migrated PostgreSQL database
    (dropped afterwards) with users fu0..fu<users-1>, members of APP: the
    demo data of ``server_environment`` would take most of a test's time."""
    import psycopg

    from devtools.redisprocs import RedisServer

    maintenance = maintenance_url()
    database = f"lc_tmp_{uuid.uuid4().hex[:12]}"
    seeding = RedisServer(tmp).start()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        {
            "LEDGERCORE_VAR_DIR": str(tmp),
            "LEDGERCORE_DEV_JWT_SECRET": DEV_SECRET,
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": maintenance.rsplit("/", 1)[0] + f"/{database}",
            "REDIS_URL": seeding.url,
            "LEDGERCORE_REDIS_PREFIX": f"lcf-{uuid.uuid4().hex[:8]}",
            **extra,
        }
    )
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "shell", "-c", SETUP_USERS.format(app=APP, count=users))
        yield env
    finally:
        seeding.stop()
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def with_redis(env: dict[str, str], redis_url: str, **extra: str) -> dict[str, str]:
    """``env`` pointed at another Redis, with a key prefix of its own."""
    return {**env, "REDIS_URL": redis_url, "LEDGERCORE_REDIS_PREFIX": f"lcf-{uuid.uuid4().hex[:8]}", **extra}


async def start_servers(env: dict[str, str], tmp: Path, count: int = 2) -> list[DaphneProcess]:
    servers = [DaphneProcess(env, tmp / f"daphne-{i}.log") for i in range(count)]
    await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))
    return servers


def stop_servers(servers: list[DaphneProcess]) -> None:
    for server in servers:
        server.stop()


def room_presence(client: Any, prefix: str, room: str) -> tuple[int, dict[str, int]]:
    """(connections, {user: connections}) of a room as Redis holds them."""
    conns = client.hlen(f"{prefix}:room:{room}:conns")
    users = {user: int(n) for user, n in client.hgetall(f"{prefix}:room:{room}:users").items()}
    return int(conns), users


async def wait_presence(
    client: Any, prefix: str, room: str, conns: int, users: dict[str, int], timeout: float
) -> float:
    """Seconds until Redis holds exactly ``conns``/``users`` for ``room``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    seen: tuple[int, dict[str, int]] | None = None
    while loop.time() - start < timeout:
        try:
            seen = await asyncio.to_thread(room_presence, client, prefix, room)
        except redis.RedisError:
            seen = None
        if seen == (conns, users):
            return loop.time() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"presence of {room} is {seen}, expected {(conns, users)} within {timeout} s")


async def join(client: Client, room: str = ROOM) -> int:
    reply = await client.request("subscribe", {"room": room}, timeout=15)
    assert reply["event"] == "subscribed", reply
    return int(reply["data"]["subscriberCount"])


async def ping_until_pong(client: Client, timeout: float) -> None:
    """The socket answers pong (UNAVAILABLE meanwhile is allowed)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await client.request("ping", timeout=5)
        if reply["event"] == "pong":
            return
        assert reply["data"]["code"] == "UNAVAILABLE", reply
        assert time.monotonic() < deadline, f"no pong within {timeout} s"
        await asyncio.sleep(0.2)

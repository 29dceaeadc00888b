"""Shared pieces of the Redis fault tests: a migrated PostgreSQL database of
their own (no demo data: only users of one application), server processes
pointed at a Redis of the test's own, and reading presence straight from
Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from devtools.redisprocs import fault_environment, room_presence, wait_presence, with_redis  # noqa: F401 - re-exported
from devtools.servers import DaphneProcess
from tests.wsclient import DEV_SECRET, Client

APP = "app_faults"
ROOM = f"application:{APP}"


def maintenance_url() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"


@contextlib.contextmanager
def database_env(tmp: Path, users: int, **extra: str) -> Iterator[dict[str, str]]:
    """A migrated database of the test's own with users fu0..fu<users-1>,
    members of APP (devtools.redisprocs.fault_environment)."""
    with fault_environment(tmp, maintenance_url(), users=users, app=APP, dev_secret=DEV_SECRET, **extra) as env:
        yield env


async def start_servers(env: dict[str, str], tmp: Path, count: int = 2) -> list[DaphneProcess]:
    servers = [DaphneProcess(env, tmp / f"daphne-{i}.log") for i in range(count)]
    await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))
    return servers


def stop_servers(servers: list[DaphneProcess]) -> None:
    for server in servers:
        server.stop()


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

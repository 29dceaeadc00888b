"""Shared pieces of the Redis fault tests: a migrated PostgreSQL database of
their own (no demo data: only users of one application), server processes
pointed at a Redis of the test's own, and reading presence straight from
Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.redisprocs import fault_environment, room_presence, wait_presence, with_redis  # noqa: F401 - re-exported
from devtools.servers import DaphneProcess
from tests.stacks import maintenance_url
from tests.wsclient import DEV_SECRET, Client

APP = "app_faults"
ROOM = f"application:{APP}"


@contextlib.contextmanager
def database_env(tmp: Path, users: int, **extra: str) -> Iterator[dict[str, str]]:
    """A migrated database of the test's own with users fu0..fu<users-1>,
    members of APP (devtools.redisprocs.fault_environment)."""
    with fault_environment(tmp, maintenance_url(), users=users, app=APP, dev_secret=DEV_SECRET, **extra) as env:
        yield env


def fault_env_fixture(name: str, *, users: int, presence_timeout_seconds: int) -> Callable[..., Any]:
    """A module-scoped fixture: database_env with ``users`` users and the
    short presence, outbox-retry and Redis timeouts under which an outage
    shows within seconds."""

    @pytest.fixture(scope="module")
    def fault_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
        with database_env(
            tmp_path_factory.mktemp(name),
            users=users,
            LEDGERCORE_PRESENCE_TIMEOUT_SECONDS=str(presence_timeout_seconds),
            LEDGERCORE_OUTBOX_RETRY_SECONDS="1",
            LEDGERCORE_REDIS_TIMEOUT_SECONDS="2",
        ) as env:
            yield env

    return fault_env


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

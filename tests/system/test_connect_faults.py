"""Connecting while PostgreSQL is down: a storm of connections, whose binds
and balances share their hops to the ORM thread (realtime.batching), is
refused connection by connection with UNAVAILABLE and close code 1011; the
server stays up and, once PostgreSQL is back, every connection of the next
storm gets its own user and its own balance.

A PostgreSQL cluster of the test's own (devtools.pgcluster) is stopped and
started; the shared servers are never touched.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets

from devtools.chargefaults import grant
from devtools.pgcluster import PostgresCluster
from devtools.servers import DaphneProcess, migrated_environment
from tests.wsclient import DEV_SECRET, dev_token

USERS = [f"storm_{n}" for n in range(20)]
# Two tabs per user: the same user bound twice in one hop.
STORM = USERS * 2
ENV = {"LEDGERCORE_THROTTLE_RATES": "connection=1000/s,user=1000/s", "LOG_LEVEL": "INFO"}


def credits_of(user: str) -> int:
    """Each user's own balance, so that a balance sent to the wrong
    connection shows."""
    return 7 * (USERS.index(user) + 1)


async def first_frames(url: str, user: str) -> tuple[list[dict[str, Any]], int | None]:
    """The first two frames a connection of ``user`` gets, or its first
    frame and its close code when the server closes it."""
    async with websockets.connect(f"{url}/ws?token={dev_token(user)}", open_timeout=10) as ws:
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
        try:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except websockets.ConnectionClosed:
            return frames, ws.close_code
        return frames, None


async def storm(url: str) -> list[tuple[list[dict[str, Any]], int | None]]:
    return await asyncio.gather(*(first_frames(url, user) for user in STORM))


def assert_served(results: list[tuple[list[dict[str, Any]], int | None]]) -> None:
    for user, (frames, closed) in zip(STORM, results, strict=True):
        assert closed is None, (user, frames, closed)
        hello, balance = frames
        assert (hello["event"], hello["data"]["userId"]) == ("connected", user)
        assert (balance["event"], balance["data"]["newBalance"]) == ("credit_balance_updated", credits_of(user))


@pytest.mark.redis_stack
def test_a_connection_storm_while_postgresql_is_down_is_refused_unavailable_and_served_once_it_is_back(tmp_path):
    from django.conf import settings

    with (
        PostgresCluster() as pg,
        migrated_environment(
            tmp_path,
            dev_secret=DEV_SECRET,
            postgres_url=pg.url(),
            redis_url=settings.REDIS_URL,
            redis_prefix=settings.LEDGERCORE_REDIS_PREFIX,
            **ENV,
        ) as env,
    ):
        grant(env, USERS, grants=1, amount={user: credits_of(user) for user in USERS})
        server = DaphneProcess(env, tmp_path / "daphne.log").start()
        try:
            assert_served(asyncio.run(storm(server.url)))

            pg.stop("fast")
            for user, (frames, closed) in zip(STORM, asyncio.run(storm(server.url)), strict=True):
                assert len(frames) == 1 and closed == 1011, (user, frames, closed)
                error = frames[0]
                assert (error["event"], error["data"]["code"]) == ("error", "UNAVAILABLE"), (user, error)
                assert error["data"]["retryAfter"] >= 1

            pg.start()
            deadline = time.monotonic() + 15
            while True:
                results = asyncio.run(storm(server.url))
                if all(closed is None for _, closed in results) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert_served(results)
        finally:
            server.stop()
            if not pg.running():
                pg.start()
        logs = server.logs()
        assert "Traceback" not in logs
        assert "the database does not answer" in logs

"""A rolling restart (scaled stack), as docs/OPERATIONS.md describes the
upgrade: two server processes under load are stopped (SIGTERM, drained) and
started again one at a time. Clients whose process closes reconnect to the
other one and resubscribe from their last offset; every broadcast the
server acknowledged reaches every client exactly once, in order."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async

from devtools.servers import DaphneProcess
from tests.factories import team
from tests.wsclient import Client, connected, dev_token, unique

pytestmark = [pytest.mark.redis_stack, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def make_application(owner: str, members: list[str]) -> str:
    return team(*members, owner=owner).id


class Publisher(threading.Thread):
    """Broadcasts numbered markers through whichever process answers; a
    marker is acknowledged when a server answered 202 (a failed attempt may
    or may not have been published, and is never sent again)."""

    def __init__(self, servers: list[DaphneProcess], application: str, owner: str) -> None:
        super().__init__(daemon=True)
        self.servers, self.application, self.token = servers, application, dev_token(owner)
        self.acknowledged: list[str] = []
        self.attempted: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            server = self.servers[n % 2]
            marker = f"m-{n}"
            n += 1
            self.attempted.append(marker)
            request = urllib.request.Request(
                f"{server.http}/api/applications/{self.application}/broadcast",
                data=json.dumps({"message": "tick", "data": {"marker": marker}}).encode(),
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    if response.status == 202:
                        self.acknowledged.append(marker)
            except (urllib.error.URLError, OSError):
                pass
            self.stop.wait(0.02)


class Follower:
    """A client that follows the room across restarts: on a close it
    reconnects to the other process and resubscribes from its last offset."""

    def __init__(self, servers: list[DaphneProcess], user: str, room: str, first: int) -> None:
        self.servers, self.user, self.room, self.current = servers, user, room, first
        self.markers: list[str] = []
        self.position: dict[str, Any] | None = None
        self.reconnects = 0
        self.done = asyncio.Event()

    async def _subscribe(self) -> Client:
        for attempt in range(200):
            server = self.servers[(self.current + attempt) % 2]
            try:
                client = await connected(server.url, self.user)
            except (OSError, websockets.InvalidStatus, websockets.ConnectionClosed, TimeoutError, AssertionError):
                await asyncio.sleep(0.1)
                continue
            data: dict[str, Any] = {"room": self.room}
            if self.position is not None:
                data["since"] = self.position
            reply = await client.request("subscribe", data, timeout=15)
            assert reply["event"] == "subscribed", reply
            if self.position is not None:
                assert reply["recovered"] is True, reply
            else:
                self.position = {"offset": reply["offset"], "epoch": reply["epoch"]}
            self.current = (self.current + attempt) % 2
            return client
        raise AssertionError(f"{self.user} could not reconnect")

    async def run(self) -> None:
        client = await self._subscribe()
        while not self.done.is_set():
            try:
                frame = await client.recv(timeout=0.5)
            except TimeoutError:
                continue
            except websockets.ConnectionClosed:
                self.reconnects += 1
                self.current += 1
                client = await self._subscribe()
                continue
            if frame.get("room") != self.room or "offset" not in frame:
                continue
            self.position = {"offset": frame["offset"], "epoch": frame["epoch"]}
            if frame["event"] == "application_broadcast":
                self.markers.append(frame["data"]["data"]["marker"])
        await client.close()


async def test_restarting_the_processes_one_at_a_time_loses_no_event(servers):
    a, b = servers
    owner = unique("owner")
    users = [unique("follower") for _ in range(4)]
    application = await make_application(owner, users)
    room = f"application:{application}"
    followers = [Follower([a, b], user, room, first=i % 2) for i, user in enumerate(users)]
    tasks = [asyncio.create_task(f.run()) for f in followers]
    while any(f.position is None for f in followers):
        await asyncio.sleep(0.05)
    publisher = Publisher([a, b], application, owner)
    publisher.start()
    try:
        for server in (a, b):
            await asyncio.sleep(1.5)
            assert await asyncio.to_thread(server.stop) == 0, server.logs()[-3000:]
            await asyncio.to_thread(server.start)
        await asyncio.sleep(1.5)
    finally:
        publisher.stop.set()
        await asyncio.to_thread(publisher.join, 15)
    acknowledged = publisher.acknowledged
    assert len(acknowledged) > 50
    # Every client gets what was acknowledged (and maybe an unacknowledged
    # attempt that went through): each once, in publishing order.
    order = {marker: n for n, marker in enumerate(publisher.attempted)}
    deadline = asyncio.get_running_loop().time() + 60
    while not all(set(acknowledged) <= set(f.markers) for f in followers):
        assert asyncio.get_running_loop().time() < deadline, [
            sorted(set(acknowledged) - set(f.markers), key=order.get)[:5] for f in followers
        ]
        await asyncio.sleep(0.2)
    for follower in followers:
        follower.done.set()
    await asyncio.gather(*tasks)
    for follower in followers:
        assert len(follower.markers) == len(set(follower.markers)), follower.user
        assert follower.markers == sorted(follower.markers, key=order.get), follower.user
        assert follower.reconnects >= 1, follower.user

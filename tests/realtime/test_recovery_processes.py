"""Missed-event recovery across server processes (scaled stack): two daphne
processes on the test database and Redis; events published through both at
once; a client that reconnects to the other process (after a clean close,
then after its process was killed) recovers what it missed, in order and
exactly once, while a connection that never left sees every event once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from typing import Any

import pytest
from channels.db import database_sync_to_async

from tests.factories import team
from tests.wsclient import Client, connected, dev_token, unique

pytestmark = [pytest.mark.redis_stack, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def make_application(owner: str, member: str) -> str:
    return team(member, owner=owner).id


def post_broadcasts(http: str, application: str, owner: str, tag: str, count: int, progress: list[int]) -> None:
    token = dev_token(owner)
    for n in range(count):
        request = urllib.request.Request(
            f"{http}/api/applications/{application}/broadcast",
            data=json.dumps({"message": "m", "data": {"marker": f"{tag}-{n}"}}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        progress.append(1)


async def collect(client: Client, room: str, until: Any, timeout: float = 40.0) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not until(frames):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"stopped at {len(frames)} frames: {frames[-3:]}"
        frame = await client.recv(timeout=remaining)
        if frame.get("room") == room and frame["event"] != "subscribed":
            frames.append(frame)
    return frames


def broadcast_markers(frames: list[dict[str, Any]]) -> list[str]:
    return [f["data"]["data"]["marker"] for f in frames if f["event"] == "application_broadcast"]


def assert_each_once_in_sender_order(got: list[str], tags: dict[str, int]) -> None:
    assert sorted(got) == sorted(f"{tag}-{n}" for tag, count in tags.items() for n in range(count))
    for tag, count in tags.items():
        assert [m for m in got if m.startswith(f"{tag}-")] == [f"{tag}-{n}" for n in range(count)]


async def test_reconnecting_to_another_process_recovers_what_was_published_through_both(servers):
    a, b = servers
    owner, mate = unique("owner"), unique("mate")
    application = await make_application(owner, mate)
    room = f"application:{application}"

    watcher = await connected(b.url, mate)  # never leaves
    watched = (await watcher.request("subscribe", {"room": room}, timeout=15))["offset"]
    client = await connected(a.url, owner)
    joined = await client.request("subscribe", {"room": room}, timeout=15)
    since = {"offset": joined["offset"], "epoch": joined["epoch"]}
    await client.close()

    # Both processes publish at once; the client comes back on B meanwhile.
    per_sender = 40
    progress: list[int] = []
    senders = [
        threading.Thread(target=post_broadcasts, args=(server.http, application, owner, tag, per_sender, progress))
        for server, tag in ((a, "a"), (b, "b"))
    ]
    for thread in senders:
        thread.start()
    while len(progress) < per_sender // 2:
        await asyncio.sleep(0.01)
    client = await connected(b.url, owner)
    reply = await client.request("subscribe", {"room": room, "since": since}, timeout=15)
    assert reply["recovered"] is True and reply["epoch"] == since["epoch"]
    for thread in senders:
        await asyncio.to_thread(thread.join)

    tags = {"a": per_sender, "b": per_sender}
    frames = await collect(client, room, lambda fs: len(broadcast_markers(fs)) == 2 * per_sender)
    offsets = [f["offset"] for f in frames]
    assert offsets == sorted(set(offsets)), offsets  # in order, each once
    assert_each_once_in_sender_order(broadcast_markers(frames), tags)
    # Everything after since, but the owner's own two join announcements
    # (before it left, and on its return), which are not sent to it.
    assert [f["event"] for f in frames if f["event"] != "application_broadcast"] == ["user_left_room"]
    assert len(set(range(since["offset"] + 1, offsets[-1] + 1)) - set(offsets)) == 2
    await client.nothing(0.5)

    # The connection that never left: every event once, in offset order,
    # the presence events of the owner's leave and return included.
    seen = await collect(watcher, room, lambda fs: len(broadcast_markers(fs)) == 2 * per_sender)
    assert [f["offset"] for f in seen] == list(range(watched + 2, watched + 2 + len(seen)))
    assert_each_once_in_sender_order(broadcast_markers(seen), tags)
    await watcher.nothing(0.5)

    # The client's process dies without closing anything; events go on
    # through A; the client reconnects there and recovers them.
    last = frames[-1]
    b.kill()
    progress.clear()
    await asyncio.to_thread(post_broadcasts, a.http, application, owner, "c", 10, progress)
    again = await connected(a.url, owner)
    reply = await again.request(
        "subscribe", {"room": room, "since": {"offset": last["offset"], "epoch": last["epoch"]}}, timeout=15
    )
    assert reply["recovered"] is True
    after = await collect(again, room, lambda fs: len(broadcast_markers(fs)) == 10)
    offsets = [f["offset"] for f in after]
    assert offsets == sorted(set(offsets)) and offsets[0] > last["offset"]
    assert broadcast_markers(after) == [f"c-{n}" for n in range(10)]
    await again.close()

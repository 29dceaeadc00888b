"""The LedgerCore ASGI application with an in-process publisher, for
bench/slow_consumers.py and tests/realtime/test_slow_consumers.py (run it as
``DaphneProcess(env, log, app="devtools.publisher_app:application")``).

From the first WebSocket connection on, ``application_broadcast`` events go
to the room ``BENCH_PUBLISH_ROOM`` (default ``application:app_bench``)
through the channel layer (``realtime.push.broadcast``, the path of
``POST /api/applications/<id>/broadcast``) at ``BENCH_PUBLISH_RATE`` events
a second. Each carries ``seq`` (0, 1, 2, ... with no gap), ``pub`` (the
publisher's name) and ``ts`` (the publisher's wall clock, in seconds), so
that a reader can tell both its latency and whether it missed an event.
When the publisher falls behind, the backlog is published as soon as it can
be (the offered rate is kept), up to one second of events; beyond that
events are skipped and their ``seq`` numbers too (``skipped`` in the next
event says how many so far). ``BENCH_PUBLISH_PAD`` characters of padding set
the event's size (64).

On the scaled stack the publisher can also run in processes of its own, as
a feed or a task worker would (``python -m devtools.publisher_app NAME``,
same variables; the server then runs with ``BENCH_PUBLISH_RATE=0``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

from ledgercore.asgi import application as inner
from realtime import push

log = logging.getLogger(__name__)

RATE = float(os.environ.get("BENCH_PUBLISH_RATE", "0") or 0)
ROOM = os.environ.get("BENCH_PUBLISH_ROOM", "application:app_bench")
PAD = "x" * int(os.environ.get("BENCH_PUBLISH_PAD", "64") or 0)
TICK = 0.005
_started: list[asyncio.Task[None]] = []


async def publish(name: str = "server") -> None:
    seq = 0
    skipped = 0
    start = time.monotonic()
    while True:
        due = int((time.monotonic() - start) * RATE)
        if due - seq > RATE:
            skipped += due - seq - int(RATE)
            seq = due - int(RATE)
        while seq < due:
            data = {"seq": seq, "pub": name, "ts": time.time(), "skipped": skipped, "pad": PAD}
            try:
                await push.broadcast(ROOM, "application_broadcast", data)
            except Exception:
                log.exception("bench publisher: broadcast failed")
            seq += 1
        await asyncio.sleep(TICK)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> Any:
    if RATE and not _started and scope.get("type") == "websocket":
        _started.append(asyncio.get_running_loop().create_task(publish()))
    return await inner(scope, receive, send)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(publish(sys.argv[1] if len(sys.argv) > 1 else "external"))


if __name__ == "__main__":
    main()

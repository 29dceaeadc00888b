"""Many connections' calls to the ORM thread, made in one hop.

Every connection reads its binding and its opening balance on the process's
one ORM thread. A hop there and back costs more than either statement: a
future, the context copied, the thread woken, and the global interpreter
lock taken back from the event loop at every step, each time waiting for
the loop's thread to let go of it. During a connection storm (a deploy, a
network blip: thousands of clients reconnecting at once) those hops queue
one behind another, and each connection's ``connected`` waits for the
hops of all those ahead of it.

``Batched`` wraps a function that answers many requests at once (one
statement for all of them). The calls made while a hop is on its way, or in
the same turn of the event loop, go together in the next hop: one hop
and one statement for a storm's worth of connections, and still one hop of
latency for a lone one. Each caller gets its own result or its own
exception; a failure of the whole call (the database does not answer)
reaches every caller of that hop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from channels.db import database_sync_to_async

log = logging.getLogger(__name__)

# Requests answered by one call at most (its statement's parameters).
MOST = 200


class Batched[A, R]:
    """``await batched(request)``: ``many(requests)`` answers a list of
    requests on the ORM thread with a list of results in the same order,
    each a result or the exception for that request alone."""

    def __init__(self, many: Callable[[Sequence[A]], Sequence[R | Exception]], most: int = MOST) -> None:
        self._many = database_sync_to_async(many)
        self._most = most
        self._waiting: list[tuple[A, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, request: A) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((request, future))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            # A loop closed with a call on its way left its callers behind.
            self._waiting = [(r, f) for r, f in self._waiting if f.get_loop() is loop]
            # Started on the loop's next turn: the calls of this turn join it.
            self._task = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
            batch = [(request, future) for request, future in batch if not future.done()]
            if not batch:
                continue
            try:
                results = await self._many([request for request, _ in batch])
            except Exception as exc:  # noqa: BLE001 - the whole call failed: each of its callers is told
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except asyncio.CancelledError:
                # The loop is shutting down: whoever still waits is told.
                for _, future in batch + self._waiting:
                    future.cancel()
                self._waiting = []
                raise
            if len(results) != len(batch):
                error = RuntimeError(f"{len(results)} results for {len(batch)} requests")
                log.error("a batched call broke its contract: %s", error)
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue  # its caller is gone (the connection closed)
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

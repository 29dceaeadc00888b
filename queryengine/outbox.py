"""A query's events from its worker thread to the event loop.

``run_query_async`` runs ``services.run_query`` on a database worker thread
(``realtime.workers``) and hands each callback's awaitable to the event
loop through an ``_Outbox``: in order, at most EVENTS_IN_FLIGHT ahead of
the socket. Closing the socket (cancelling the awaiting task) cancels the
query.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from queryengine.errors import ConnectionGone, QueryFailed
from queryengine.executor import CancelHandle
from queryengine.services import QueryOutcome, SettleCallback, run_query
from realtime.workers import run_in_db_worker

log = logging.getLogger(__name__)

# Called on the worker thread; what it returns is awaited on the event loop.
# An ``async def`` fits (calling it runs none of its code); so does a plain
# function that prepares on the worker (e.g. encodes a frame) and returns
# the awaitable that sends it.
AsyncCallback = Callable[..., Awaitable[None]]
CALLBACK_TIMEOUT_SECONDS = 30.0
# Events of one query handed to the event loop and not yet sent: the worker
# fetches the next rows while the loop sends the previous ones, and a
# socket slower than the query still slows the query down.
EVENTS_IN_FLIGHT = 4
_EMPTY = object()


class _Outbox:
    """The events of one query, awaited in order by one task on the event
    loop. The worker thread waits only when EVENTS_IN_FLIGHT are queued,
    and wakes the loop only when that task sleeps: a wake-up is a write to
    the loop's pipe, and each costs the worker a wait for the GIL while the
    loop is busy."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: deque[Awaitable[None] | None] = deque()
        self.lock = threading.Lock()
        self.asleep = False
        self.wake = asyncio.Event()
        self.slots = threading.Semaphore(EVENTS_IN_FLIGHT)
        self.error: BaseException | None = None
        self.task = loop.create_task(self._send())

    async def _send(self) -> None:
        while True:
            with self.lock:
                item: Any = self.pending.popleft() if self.pending else _EMPTY
                self.asleep = item is _EMPTY
            if item is _EMPTY:
                await self.wake.wait()
                self.wake.clear()
                continue
            if item is None:
                return
            try:
                if self.error is None:
                    await item
                else:
                    _discard(item)
            except Exception as exc:  # noqa: BLE001 - handed to the worker at its next event
                self.error = exc
            finally:
                self.slots.release()

    def _put(self, item: Awaitable[None] | None) -> None:
        with self.lock:
            self.pending.append(item)
            wake, self.asleep = self.asleep, False
        if wake:
            self.loop.call_soon_threadsafe(self.wake.set)

    def bridge(self, callback: AsyncCallback | None) -> Callable[..., None] | None:
        if callback is None:
            return None

        def call(*args: Any) -> None:
            deadline = time.monotonic() + CALLBACK_TIMEOUT_SECONDS
            while not self.slots.acquire(timeout=0.05):
                if self.error is not None:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the query's events were not sent in time")
            if self.error is not None:
                raise self.error
            self._put(callback(*args))

        return call

    async def drain(self) -> None:
        """Send what is queued; then raise what a callback raised."""
        self._put(None)
        await self.task
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.error = self.error or ConnectionGone("the query's connection went away")
        self.task.cancel()
        with self.lock:
            left, self.pending = list(self.pending), deque()
        for item in left:
            _discard(item)


def _discard(item: Awaitable[None] | None) -> None:
    close = getattr(item, "close", None)
    if close is not None:
        close()  # a coroutine never awaited


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def run_query_async(
    *,
    user_pk: int,
    application_id: str,
    sql: str,
    params: Any = None,
    cancel: CancelHandle | None = None,
    on_started: AsyncCallback | None = None,
    on_progress: AsyncCallback | None = None,
    on_chunk: AsyncCallback | None = None,
    on_completed: AsyncCallback | None = None,
    reference: str = "",
    settle: SettleCallback | None = None,
) -> QueryOutcome:
    """``run_query`` in a worker thread with async callbacks (same order and
    arguments; the worker does not wait for each to finish, see _Outbox).
    Cancelling the awaiting task cancels the query."""
    loop = asyncio.get_running_loop()
    cancel = cancel or CancelHandle()
    outbox = _Outbox(loop)
    future = run_in_db_worker(
        run_query,
        user_pk=user_pk,
        application_id=application_id,
        sql=sql,
        params=params,
        cancel=cancel,
        on_started=outbox.bridge(on_started),
        on_progress=outbox.bridge(on_progress),
        on_chunk=outbox.bridge(on_chunk),
        on_completed=outbox.bridge(on_completed),
        reference=reference,
        settle=settle,
    )
    try:
        outcome = await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.cancel()
        outbox.abort()
        # Nobody awaits the worker now: retrieve its outcome (the query's
        # cancellation) so it is not logged as an error never retrieved.
        future.add_done_callback(_retrieve)
        raise
    except QueryFailed:
        # The events before the failure go out before its query_error.
        try:
            await outbox.drain()
        except Exception:
            log.debug("sending the events of a failed query failed", exc_info=True)
        raise
    except BaseException:
        outbox.abort()
        raise
    await outbox.drain()
    return outcome

"""The life of a server process: its live connections, and how it drains.

Every connection registers here once accepted and unregisters when its
disconnect has run (its rooms left). Domain apps declare the work they run
in the process outside any connection (``add_work``): what is still busy,
how to stop it at the deadline (refunding it), what to flush before the
connections close.

On SIGTERM (or SIGINT) the server entry point (``ledgercore.serve``) stops
listening and runs ``drain``:

1. Until the deadline (``LEDGERCORE_DRAIN_SECONDS``), every connection with
   no request in flight is closed with 1001 and a reason: at once if it had
   none at the signal, else as soon as its last request ends (its final
   events go out first: the close follows the room events the process
   received before it, the credit events of its charge among them, and what
   was sent to the connection's own channel (``realtime.fanout``
   ``close_after_events``); directly if that is slow).
   New requests are refused with ``UNAVAILABLE`` and ``retryAfter``;
   ``ping``, ``unsubscribe`` and ``*_cancel`` still work.
2. At the deadline, what is left is stopped: in-process work first (an
   address analysis running here fails and is refunded), then the requests
   still running are cancelled: their holds are released (the consumer's
   cancellation path), and each gets its category's error event
   (``UNAVAILABLE``, nothing charged) before its connection is closed 1001.
   A request whose work was handed to a durable job elsewhere (an analysis
   run by ``db_worker``) is not stopped there: the job captures or releases
   its charge and sends its result to ``user:<userId>``.
3. The close handshakes run (a client that does not answer is dropped),
   each connection's disconnect leaves its rooms (``user_left_room`` once
   per user), and the process's presence is released: on Redis its
   heartbeat and its membership record go, and any membership a connection
   did not remove is removed and announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from realtime import presence, settlement
from realtime.departures import on_departures
from realtime.errors import Unavailable
from realtime.fanout import fanout

if TYPE_CHECKING:
    from realtime.consumers import RealtimeConsumer
    from realtime.context import RequestContext
    from realtime.registry import InboundEvent

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_REASON = "server shutting down; reconnect"
RETRY_AFTER_SECONDS = 1
# Still served while draining: they start no work.
DRAIN_ALLOWED = frozenset({"ping", "unsubscribe"})
POLL_SECONDS = 0.05
# At the deadline: how long stopped requests get to end and settle, and how
# long the close handshakes and disconnects get afterwards.
STOP_GRACE_SECONDS = 0.5
CLOSE_GRACE_SECONDS = 1.0
# Connections closed and not yet disconnected at any one time, at most.
CLOSE_BATCH = 50
# A close sent through a connection's channel not delivered by then is made
# directly.
CHANNEL_CLOSE_WAIT_SECONDS = 0.3
# All that follows the deadline, at most (the process still has to exit).
AFTER_DEADLINE_SECONDS = 1.3


@dataclass(frozen=True)
class Work:
    """Work a domain app runs in this process outside a connection's task.
    ``busy`` counts what is running; ``stop`` ends it at the drain deadline,
    refunding it, and returns how much it stopped; ``flush`` sends what is
    queued (credit events). ``stop`` and ``flush`` are called in a thread."""

    name: str
    busy: Callable[[], int] | None = None
    stop: Callable[[], int] | None = None
    flush: Callable[[], object] | None = None


@dataclass
class DrainReport:
    connections: int = 0
    closed_idle: int = 0
    closed_at_deadline: int = 0
    stopped_requests: int = 0
    stopped_work: int = 0
    not_disconnected: int = 0
    seconds: float = 0.0


_consumers: set[RealtimeConsumer] = set()
_work: list[Work] = []
_stopped: list[tuple[RealtimeConsumer, Any, InboundEvent]] = []
_draining = False
_forced: asyncio.Event | None = None


def register(consumer: RealtimeConsumer) -> None:
    _consumers.add(consumer)


def unregister(consumer: RealtimeConsumer) -> None:
    _consumers.discard(consumer)


def connections() -> int:
    return len(_consumers)


def live() -> list[RealtimeConsumer]:
    """The process's open connections."""
    return list(_consumers)


def add_work(work: Work) -> None:
    _work[:] = [w for w in _work if w.name != work.name] + [work]


def draining() -> bool:
    return _draining


def refuses(event: str) -> bool:
    """Whether a new request for ``event`` is refused (the process drains)."""
    return _draining and event not in DRAIN_ALLOWED and not event.endswith("_cancel")


def unavailable() -> Unavailable:
    return Unavailable(
        "the server is shutting down: the request was not run and nothing was charged; retry on another server",
        retry_after=RETRY_AFTER_SECONDS,
    )


def stopped(ctx: RequestContext, spec: InboundEvent) -> None:
    """A request's task was cancelled before its handler ended (its hold is
    released by the caller). While draining, it is owed a final error."""
    if _draining:
        _stopped.append((ctx.connection, ctx.request_id, spec))


def force() -> None:
    """Skip the rest of the drain window (a second signal)."""
    if _forced is not None:
        _forced.set()


def _busy() -> int:
    total = 0
    for work in _work:
        if work.busy is not None:
            try:
                total += work.busy()
            except Exception:
                log.exception("could not tell whether %s is busy", work.name)
    return total


async def _call_hooks(kind: str, timeout: float) -> int:
    """Run every ``kind`` hook in a thread, all within ``timeout``; returns
    the total the stop hooks report."""
    hooks = [(work.name, getattr(work, kind)) for work in _work if getattr(work, kind) is not None]
    if not hooks:
        return 0
    calls = [asyncio.ensure_future(asyncio.to_thread(hook)) for _, hook in hooks]
    await asyncio.wait(calls, timeout=timeout)
    total = 0
    for (name, _), call in zip(hooks, calls, strict=True):
        if not call.done():
            log.warning("%s of %s did not finish in time during shutdown", kind, name)
            call.add_done_callback(lambda done: done.cancelled() or done.exception())
        elif call.exception() is not None:
            log.error("%s of %s failed during shutdown", kind, name, exc_info=call.exception())
        elif kind == "stop" and isinstance(call.result(), int):
            total += call.result()
    return total


async def _flush(timeout: float) -> None:
    """Push what is queued for the connections (credit events)."""
    await _call_hooks("flush", timeout)


async def _close_now(consumer: RealtimeConsumer) -> None:
    try:
        await consumer.close(code=CLOSE_GOING_AWAY, reason=CLOSE_REASON)
    except Exception:
        log.debug("closing a connection during shutdown failed", exc_info=True)


class _Closer:
    """Closes connections with 1001: at once, or behind what was sent to it
    before (the room events the process received, such as the credit events
    of the request that just ended, then what waits on the connection's own
    channel); directly if the close has not been delivered within
    CHANNEL_CLOSE_WAIT_SECONDS (a busy channel layer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed: set[RealtimeConsumer] = set()
        self.queued: dict[RealtimeConsumer, float] = {}

    async def now(self, consumer: RealtimeConsumer) -> None:
        self.closed.add(consumer)
        self.queued.pop(consumer, None)
        await _close_now(consumer)

    async def after_queued(self, consumer: RealtimeConsumer) -> None:
        self.closed.add(consumer)
        message = {"type": "lifecycle.close", "code": CLOSE_GOING_AWAY, "reason": CLOSE_REASON}
        try:
            await fanout.close_after_events(consumer, message)
        except Exception:
            log.debug("could not queue the close of a connection; closing it now", exc_info=True)
            await _close_now(consumer)
            return
        self.queued[consumer] = self.loop.time()

    async def overdue(self) -> None:
        now = self.loop.time()
        for consumer, queued in list(self.queued.items()):
            if consumer not in _consumers:
                del self.queued[consumer]
            elif now - queued >= CHANNEL_CLOSE_WAIT_SECONDS:
                await self.now(consumer)


async def _finish_stopped() -> int:
    message = Unavailable(
        "the server is shutting down: the request was stopped before it finished and nothing was charged; "
        "retry on another server",
        retry_after=RETRY_AFTER_SECONDS,
    ).payload()
    owed, _stopped[:] = list(_stopped), []
    for consumer, request_id, spec in owed:
        try:
            await consumer.send_event(spec.error_event, dict(message), request_id)
        except Exception:
            log.debug("could not send the final error of a stopped request", exc_info=True)
    return len(owed)


async def drain(seconds: float, after: float = AFTER_DEADLINE_SECONDS) -> DrainReport:
    """Close every connection of this process, letting requests in flight
    finish for up to ``seconds``; what follows the deadline (stopping,
    refunding, close handshakes) takes at most ``after`` seconds more (see
    the module's docstring). Presence is released by release_presence()."""
    global _draining, _forced
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + seconds
    end = deadline + after
    _draining = True
    _forced = forced = asyncio.Event()
    report = DrainReport(connections=len(_consumers))
    closer = _Closer(loop)
    idle_at_signal = {c for c in _consumers if not c.tasks}

    def left(grace: float) -> float:
        return max(min(grace, end - loop.time()), 0.0)

    while loop.time() < deadline and not forced.is_set():
        # Paced: the disconnects of the connections being closed (rooms
        # left, announced) share the channel layer's and Redis's connections.
        room = CLOSE_BATCH - sum(1 for c in closer.closed if c in _consumers)
        idle = [c for c in _consumers if c not in closer.closed and not c.tasks][: max(room, 0)]
        if idle:
            await _flush(max(deadline - loop.time(), 0.0))
            for consumer in idle:
                if consumer in _consumers and not consumer.tasks:
                    # Idle at the signal: at once. Idle since: after the
                    # events of its last request.
                    if consumer in idle_at_signal:
                        await closer.now(consumer)
                    else:
                        await closer.after_queued(consumer)
                    report.closed_idle += 1
        await closer.overdue()
        if not _consumers and not _busy():
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(forced.wait(), min(POLL_SECONDS, max(deadline - loop.time(), 0)))
    if forced.is_set():
        end = loop.time() + after

    in_flight = [task for consumer in _consumers for task in consumer.tasks]
    if in_flight or _busy():
        report.stopped_work = await _call_hooks("stop", left(STOP_GRACE_SECONDS))
        if report.stopped_work and in_flight:
            # Stopped work tells its requests (e.g. address_analysis_error).
            await asyncio.wait(in_flight, timeout=left(STOP_GRACE_SECONDS))
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.wait(in_flight, timeout=left(STOP_GRACE_SECONDS))
        if settlement.SETTLING:
            await asyncio.wait(list(settlement.SETTLING), timeout=left(STOP_GRACE_SECONDS))
        report.stopped_requests = await _finish_stopped()
    await _flush(left(STOP_GRACE_SECONDS))
    for consumer in [c for c in _consumers if c not in closer.closed]:
        await closer.after_queued(consumer)
        report.closed_at_deadline += 1

    grace_end = loop.time() + left(CLOSE_GRACE_SECONDS)
    while (_consumers or _busy()) and loop.time() < grace_end:
        await closer.overdue()
        await asyncio.sleep(POLL_SECONDS)
    report.not_disconnected = len(_consumers)
    report.seconds = loop.time() - started
    return report


async def release_presence() -> None:
    """Remove this process from presence; announce memberships a connection
    did not remove itself."""
    store = presence._store
    if store is None:
        return
    try:
        departures = await store.release()
    except Exception:
        log.exception("could not release this process's presence; it expires with its heartbeat")
        return
    if departures:
        log.warning("shutdown: %d memberships were still registered; removed", len(departures))
        await on_departures(departures)

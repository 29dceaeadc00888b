"""Settling a request's charge after its handler returned: capture, or
release what was refused or failed on the server side.

A settlement never delays the request's answer: it runs in a task of its
own that cancelling the request's task does not stop, retried until the
database takes it. If this process dies first, the hold is released by the
other processes (``realtime.processes``). The drain waits on ``SETTLING``
before it ends (``realtime.lifecycle``).
"""

from __future__ import annotations

import asyncio
import logging

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from realtime import charging, errors
from realtime.context import RequestContext
from realtime.registry import InboundEvent

log = logging.getLogger(__name__)

# Retries of a settlement the database did not take (seconds, doubling).
SETTLE_RETRY_FIRST, SETTLE_RETRY_MAX = 0.25, 2.0
# The longest wait after a failure that is not an outage (logged each time).
SETTLE_RETRY_OTHER_MAX = 60.0

# Settlements still running, kept alive until done.
SETTLING: set[asyncio.Future[None]] = set()


def settle_shielded(
    spec: InboundEvent, ctx: RequestContext, charge: charging.Charge, release: bool
) -> asyncio.Future[None]:
    """Settle in a task of its own, kept alive until done, that cancelling
    the request's task does not stop."""
    settling = asyncio.ensure_future(_settle(spec, ctx, charge, release))
    SETTLING.add(settling)
    settling.add_done_callback(SETTLING.discard)
    return settling


def _retried(exc: BaseException) -> bool:
    """Every failure but a settlement made elsewhere; never a cancellation
    (the event loop ends), which tenacity would otherwise retry."""
    return isinstance(exc, Exception) and not isinstance(exc, charging.SettledElsewhere)


def _wait(state: RetryCallState) -> float:
    """Doubling from SETTLE_RETRY_FIRST; up to SETTLE_RETRY_MAX while the
    database does not answer, up to a minute for any other failure."""
    assert state.outcome is not None
    exc = state.outcome.exception()
    outage = exc is not None and errors.is_database_error(exc)
    cap = SETTLE_RETRY_MAX if outage else SETTLE_RETRY_OTHER_MAX
    return float(min(SETTLE_RETRY_FIRST * 2 ** (state.attempt_number - 1), cap))


async def _settle(spec: InboundEvent, ctx: RequestContext, charge: charging.Charge, release: bool) -> None:
    """Capture or release, retried until the database takes it (the
    request's answer is already sent; a settlement never delays it). If this
    process dies first, the hold is released by the others."""

    def report(state: RetryCallState) -> None:
        assert state.outcome is not None
        exc = state.outcome.exception()
        if exc is not None and not errors.is_database_error(exc):
            log.error("failed to settle the charge of %s (request id %r)", spec.name, ctx.request_id, exc_info=exc)
        elif state.attempt_number == 1:
            log.warning("the charge of %s (request id %r) is not settled yet: retrying", spec.name, ctx.request_id)

    retrying = AsyncRetrying(retry=retry_if_exception(_retried), wait=_wait, before_sleep=report, reraise=True)
    try:
        async for attempt in retrying:
            with attempt:
                if not charge.settled:
                    await charging.charger.settle(charge.token, release, ctx.meter.cost)
    except charging.SettledElsewhere:
        return
    charge.settled = True
    retries = retrying.statistics.get("attempt_number", 1) - 1
    if retries:
        log.info("the charge of %s (request id %r) settled after %d retries", spec.name, ctx.request_id, retries)

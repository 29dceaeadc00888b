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

from realtime import charging, errors
from realtime.context import RequestContext
from realtime.registry import InboundEvent

log = logging.getLogger(__name__)

# Retries of a settlement the database did not take (seconds, doubling).
SETTLE_RETRY_FIRST, SETTLE_RETRY_MAX = 0.25, 2.0

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


async def _settle(spec: InboundEvent, ctx: RequestContext, charge: charging.Charge, release: bool) -> None:
    """Capture or release, retried until the database takes it (the
    request's answer is already sent; a settlement never delays it). If this
    process dies first, the hold is released by the others."""
    delay, attempts = SETTLE_RETRY_FIRST, 0
    while not charge.settled:
        try:
            await charging.charger.settle(charge.token, release, ctx.meter.cost)
        except charging.SettledElsewhere:
            return
        except Exception as exc:
            attempts += 1
            outage = errors.is_database_error(exc)
            if not outage:
                log.exception("failed to settle the charge of %s (request id %r)", spec.name, ctx.request_id)
            elif attempts == 1:
                log.warning("the charge of %s (request id %r) is not settled yet: retrying", spec.name, ctx.request_id)
            await asyncio.sleep(delay)
            delay = min(delay * 2, SETTLE_RETRY_MAX if outage else 60.0)
            continue
        charge.settled = True
        if attempts:
            log.info("the charge of %s (request id %r) settled after %d retries", spec.name, ctx.request_id, attempts)

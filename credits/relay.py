"""The outbox relay of a server process: every few seconds it re-sends the
credit events that commit-time delivery did not confirm (credits.events),
releases holds past their expiry and expires credits past their date
(credits.services).
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_fixed

from credits import events
from credits.services import expire_credits, release_expired_holds
from realtime import processes

log = logging.getLogger(__name__)


async def relay_once(older_than_seconds: float | None = None) -> int:
    """Re-send what commit-time delivery did not confirm; release expired
    holds; expire credits past their expiry date. Returns how many outbox
    rows were sent."""
    await database_sync_to_async(release_expired_holds)()
    await database_sync_to_async(expire_credits)()
    wait = settings.LEDGERCORE_OUTBOX_RETRY_SECONDS if older_than_seconds is None else older_than_seconds
    ids = await database_sync_to_async(events.pending_ids)(wait)
    return await events.adeliver(ids) if ids else 0


_relay_task: asyncio.Task[None] | None = None


def start_relay() -> None:
    """Run the relay in this server process (idempotent)."""
    global _relay_task
    if _relay_task is None or _relay_task.done():
        _relay_task = asyncio.get_running_loop().create_task(_relay_loop())


def _log_failure(attempt: RetryCallState) -> None:
    exc = attempt.outcome.exception() if attempt.outcome is not None else None
    if exc is not None and processes.is_database_error(exc):
        log.warning("credit outbox relay: the database does not answer (%s); retrying", type(exc).__name__)
    else:
        log.error("credit outbox relay failed; retrying", exc_info=exc)


async def _relay_loop() -> None:
    interval = max(settings.LEDGERCORE_OUTBOX_RETRY_SECONDS / 2, 0.1)
    # A failed pass is logged and retried after the same interval, without
    # limit: the relay runs for the life of the process. Cancellation (a
    # BaseException) is not retried.
    retrying = AsyncRetrying(
        wait=wait_fixed(interval), retry=retry_if_exception_type(Exception), before_sleep=_log_failure
    )
    while True:
        await retrying(relay_once)
        await asyncio.sleep(interval)

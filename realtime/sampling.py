"""Figures sampled every few seconds by each server process: the outbound
buffers of its connections (``realtime.metrics``), and the metrics files of
processes that died (marked dead, so that their live gauges stop counting)."""

from __future__ import annotations

import asyncio
import logging

from realtime import lifecycle, metrics, transport

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 5.0

_task: asyncio.Task[None] | None = None


def sample_outbound() -> tuple[int, int]:
    """(total, largest) bytes buffered for this process's connections (under
    daphne; elsewhere the server hides its buffers and both are 0)."""
    total = largest = 0
    for consumer in lifecycle.live():
        writer = consumer.scope.get(transport.SCOPE_KEY)
        if writer is None:
            continue
        size = writer.outbound.buffered()
        total += size
        largest = max(largest, size)
    return total, largest


async def _run() -> None:
    while True:
        try:
            total, largest = sample_outbound()
            metrics.OUTBOUND_BYTES.set(total)
            metrics.OUTBOUND_MAX_BYTES.set(largest)
            await asyncio.to_thread(metrics.sweep_dead)
        except Exception:
            log.exception("metrics sampling failed; retrying")
        await asyncio.sleep(SAMPLE_SECONDS)


def start() -> None:
    """Background starter (realtime.background): idempotent."""
    global _task
    if _task is None or _task.done():
        _task = asyncio.get_running_loop().create_task(_run())

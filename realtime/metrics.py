"""Prometheus metrics of every server process, served at ``/metrics``.

``prometheus_client`` in multiprocess mode: each process (daphne servers,
the task worker) writes its samples to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (set by the settings, default
``<LEDGERCORE_VAR_DIR>/metrics``), and a scrape of any process adds them
up, so the figures are those of the whole machine's processes whichever one
answers. A process that died is marked dead (``sweep_dead``, every process
heartbeat and at start) so that its live gauges stop counting.

The series this module declares are the connection layer's; apps declare
their own beside their code (``queryengine.metrics``) and add figures read
from the database at scrape time with ``register_collector`` (outbox lag,
ledger totals, the job queue's depth): those are read once per scrape by the
answering process, not summed across processes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

CONNECTIONS = Gauge(
    "ledgercore_connections_open", "WebSocket connections open (authenticated).", multiprocess_mode="livesum"
)
EVENTS_IN = Counter("ledgercore_events_in_total", "Request events received, by event name.", ["event"])
EVENTS_OUT = Counter(
    "ledgercore_events_out_total",
    "Events sent to clients, by event name (a room event counts once per member it was handed to).",
    ["event"],
)
ERRORS = Counter("ledgercore_errors_total", "Error events sent to clients, by error code.", ["code"])
THROTTLED = Counter("ledgercore_throttled_total", "Requests refused by a rate limit, by limit.", ["limit"])
OUTBOUND_BYTES = Gauge(
    "ledgercore_outbound_buffered_bytes",
    "Bytes written to WebSocket connections and not yet sent (all connections of the process).",
    multiprocess_mode="livesum",
)
OUTBOUND_MAX_BYTES = Gauge(
    "ledgercore_outbound_buffered_bytes_max",
    "The largest outbound buffer of one connection.",
    multiprocess_mode="livemax",
)
SLOW_CLOSED = Counter("ledgercore_slow_consumers_closed_total", "Connections closed as slow consumers (4008).")
STALLS = Counter(
    "ledgercore_outbound_stalls_total",
    "Times a connection's room events waited for its client to read what it was sent.",
)
PUBLISH_SECONDS = Histogram(
    "ledgercore_channel_layer_publish_seconds",
    "Time to publish a room event (or several of one room together): history and channel-layer group send.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

_PREFIX = '{"event":"'
# event name -> its EVENTS_OUT child (a room event is counted per member).
_out: dict[str, Any] = {}


def count_out(text: str, frames: int = 1) -> None:
    """Count ``frames`` frames of ``text`` sent; every frame is
    ``protocol.encode``'s, which starts with its event name."""
    end = text.find('"', len(_PREFIX)) if text.startswith(_PREFIX) else -1
    name = text[len(_PREFIX) : end] if end > 0 else "other"
    child = _out.get(name)
    if child is None:
        child = _out[name] = EVENTS_OUT.labels(name)
    child.inc(frames)


# name -> a function returning the metric families read at scrape time
ScrapeCollector = Callable[[], Iterable[Metric]]
_collectors: dict[str, ScrapeCollector] = {}


def register_collector(name: str, collect: ScrapeCollector) -> None:
    """Add figures read at scrape time (by the answering process only)."""
    _collectors[name] = collect


class _AppCollectors(Collector):
    def collect(self) -> Iterable[Metric]:
        for name, collect in list(_collectors.items()):
            try:
                yield from collect()
            except Exception:
                # One failing source (the database down, say) must not hide
                # the others: its series are missing from this scrape.
                log.warning("metrics: the %s collector failed", name, exc_info=True)


def multiprocess_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def render() -> bytes:
    """The exposition text of every process's series and the scrape-time ones."""
    registry = CollectorRegistry()
    # The settings always set the directory; without it only the scrape-time
    # figures would be served.
    if multiprocess_dir() is not None:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    registry.register(_AppCollectors())
    return bytes(generate_latest(registry))


def sweep_dead() -> int:
    """Mark the processes whose files are in the directory and that no
    longer run as dead (their live gauges stop counting; counters and
    histograms keep their totals). Returns how many were marked."""
    directory = multiprocess_dir()
    if directory is None or not directory.is_dir():
        return 0
    pids: set[int] = set()
    for path in directory.glob("gauge_live*_*.db"):
        suffix = path.stem.rsplit("_", 1)[-1]
        if suffix.isdigit():
            pids.add(int(suffix))
    dead = [pid for pid in pids if pid != os.getpid() and not _alive(pid)]
    for pid in dead:
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    return len(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

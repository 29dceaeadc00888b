"""Candle resolutions and durations, in plain Python (no Django import) so that
handlers, services, benchmarks and the live feed share one definition.

Buckets are aligned to the Unix epoch: the bucket of a trade at ``ts`` (epoch
ms) at resolution ``r`` opens at ``ts - ts % r`` and is labelled by that open
time. Every resolution divides one day, so a day bucket opens at 00:00 UTC.
"""

from __future__ import annotations

import re

RESOLUTIONS = ("100ms", "250ms", "500ms", "1s", "5s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d")

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION_RE = re.compile(r"^([0-9]{1,12})(ms|s|m|h|d|w)$")


def duration_ms(text: str) -> int:
    """``"15m"`` -> 900000. Units ms s m h d w; a positive integer count.
    Raises ValueError on anything else."""
    match = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"expected a duration such as 500ms, 15m, 24h or 7d, not {str(text)[:40]!r}")
    value = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if value <= 0:
        raise ValueError("a duration must be positive")
    return value


RESOLUTION_MS: dict[str, int] = {name: duration_ms(name) for name in RESOLUTIONS}

# Resolutions kept as stored roll-ups (one row per venue and bucket). Each
# divides the next, so each is built exactly from the previous one; every
# other resolution of 1s and coarser is rolled up at query time from the
# coarsest stored one that divides it, reading at most 6 rows per candle
# (30s from 5s, 1d from 4h). Fewer levels keep ingestion of sparse series
# cheap: a lone trade writes one row per stored level. Sub-second candles
# are built from trades at query time: storing them would cost about a row
# per trade and resolution, while a capped request reads at most
# MAX_CANDLES x 500 ms of trades.
STORED_RESOLUTIONS = ("1s", "5s", "1m", "15m", "4h")


def source_resolution(resolution: str) -> str | None:
    """The stored resolution candles of ``resolution`` are rolled up from
    (the coarsest one that divides it), or None for sub-second resolutions,
    which are built from trades."""
    size = RESOLUTION_MS[resolution]
    fitting = [name for name in STORED_RESOLUTIONS if size % RESOLUTION_MS[name] == 0]
    return fitting[-1] if fitting else None


def bucket_start(ts_ms: int, resolution_ms: int) -> int:
    return ts_ms - ts_ms % resolution_ms


def format_duration(ms: int) -> str:
    """900000 -> "15m"; 1000000 -> "16m40s": for messages."""
    if ms <= 0:
        return "0ms"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def divides(finer: str, coarser: str) -> bool:
    """Whether buckets of ``coarser`` are unions of whole buckets of ``finer``."""
    return RESOLUTION_MS[coarser] % RESOLUTION_MS[finer] == 0

"""Parsing of realtime's setting values: throttle rates and Redis URLs.

Plain functions without Django, so that the project's settings module can
validate its values with them at startup (``ledgercore.config``) and
realtime reads them the same way at run time.
"""

from __future__ import annotations

import re
from typing import Any

from redis.connection import parse_url

RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(ms|s|sec|m|min|h|hour|d|day)\s*$")
_PERIOD_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def parse_rate(value: str) -> tuple[int, float]:
    """'20/s' -> (capacity 20, refill period 1.0 s); '100/5m' -> (100, 300.0)."""
    match = RATE_RE.match(value)
    if not match:
        raise ValueError(f"rate {value!r} is not of the form N/period, e.g. 20/s or 100/5m")
    count, multiplier, unit = match.groups()
    capacity = int(count)
    period = (int(multiplier) if multiplier else 1) * _PERIOD_SECONDS[unit]
    if capacity <= 0 or period <= 0:
        raise ValueError(f"rate {value!r} must be positive")
    return capacity, float(period)


def redis_url_credentials(url: str) -> dict[str, Any]:
    """db, username and password of a ``redis://`` URL (Sentinel mode: its
    host and port are not used, the Sentinels name the primary)."""
    if not url:
        return {}
    parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    return {k: parsed[k] for k in ("db", "username", "password") if parsed.get(k) is not None}

"""Request windows of candles, in plain Python.

A window is either a duration (``"15m"``, ``"24h"``: the last such span up to
now) or ``{"from": ms, "to": ms}``. It selects whole buckets, never parts of
one: a candle is always built from every trade of its bucket.

- ``{from, to}``: the candles whose timestamp (bucket open time) is in
  ``[from, to)``.
- duration ``d``: the candles whose bucket opens in ``(now - d, now]``, which
  is ``d / resolution`` buckets ending with the forming one, and at least the
  forming one.
- no window: the last ``DEFAULT_CANDLES`` buckets up to now.

At most ``MAX_CANDLES`` buckets per request; a wider window is refused with a
message saying how far to narrow it or which resolution fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketdata.resolutions import RESOLUTION_MS, RESOLUTIONS, bucket_start, duration_ms, format_duration

MAX_CANDLES = 10_000
DEFAULT_CANDLES = 500
# 9999-12-31T23:59:59.999Z: beyond it nothing is a plausible market time.
MAX_TIMESTAMP_MS = 253_402_300_799_999


class WindowError(ValueError):
    """A malformed window; ``errors`` maps fields to messages."""

    def __init__(self, message: str, errors: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.errors = errors


class TooManyCandles(ValueError):
    def __init__(self, buckets: int, resolution: str) -> None:
        self.buckets = buckets
        self.resolution = resolution
        self.max_candles = MAX_CANDLES
        span = buckets * RESOLUTION_MS[resolution]
        fitting = [r for r in RESOLUTIONS if span <= MAX_CANDLES * RESOLUTION_MS[r]]
        advice = f"narrow the window to at most {format_duration(MAX_CANDLES * RESOLUTION_MS[resolution])}"
        if fitting:
            advice += f" at {resolution}, or use resolution {fitting[0]} or coarser"
        super().__init__(
            f"the window spans {buckets} buckets of {resolution}; at most {MAX_CANDLES} candles per request: {advice}"
        )


@dataclass(frozen=True)
class Window:
    """Bucket open times ``start_ms <= t < end_ms``; ``start_ms`` is aligned."""

    start_ms: int
    end_ms: int
    resolution: str

    @property
    def buckets(self) -> int:
        size = RESOLUTION_MS[self.resolution]
        return max(0, -(-(self.end_ms - self.start_ms) // size))


def span_window(resolution: str, from_ms: int, to_ms: int) -> Window:
    """Candles with timestamp in [from_ms, to_ms), capped."""
    size = RESOLUTION_MS[resolution]
    first = bucket_start(from_ms + size - 1, size)
    return _capped(Window(first, max(first, to_ms), resolution))


def trailing_window(resolution: str, span_ms: int, now_ms: int) -> Window:
    """Buckets opening in (now - span, now], at least the forming one, capped."""
    size = RESOLUTION_MS[resolution]
    last = bucket_start(now_ms, size)
    first = min(bucket_start(now_ms - span_ms, size) + size, last)
    return _capped(Window(first, last + size, resolution))


def resolve_window(window: Any, resolution: str, now_ms: int) -> Window:
    """The window of a request (None, a duration string or {from, to})."""
    if resolution not in RESOLUTION_MS:
        raise WindowError("unknown resolution", {"resolution": [f"Expected one of {' '.join(RESOLUTIONS)}."]})
    if window is None:
        return trailing_window(resolution, DEFAULT_CANDLES * RESOLUTION_MS[resolution], now_ms)
    if isinstance(window, str):
        try:
            span = duration_ms(window)
        except ValueError as exc:
            raise WindowError("bad window", {"window": [str(exc)]}) from None
        return trailing_window(resolution, span, now_ms)
    if isinstance(window, dict):
        from_ms, to_ms = parse_range(window)
        return span_window(resolution, from_ms, to_ms)
    raise WindowError("bad window", {"window": ["Expected a duration string or {from, to} in epoch ms."]})


def parse_range(window: dict[str, Any]) -> tuple[int, int]:
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(window) - {"from", "to"}, key=str)
    for key in unknown[:10]:
        errors[f"window.{key}"[:100]] = ["Unknown field."]
    values: dict[str, int] = {}
    for key in ("from", "to"):
        value = window.get(key)
        if value is None:
            errors[f"window.{key}"] = ["This field is required (epoch milliseconds)."]
        elif isinstance(value, bool) or not isinstance(value, int):
            errors[f"window.{key}"] = ["Expected an integer (epoch milliseconds)."]
        elif not 0 <= value <= MAX_TIMESTAMP_MS:
            errors[f"window.{key}"] = [f"Expected 0..{MAX_TIMESTAMP_MS}."]
        else:
            values[key] = value
    if not errors and values["from"] >= values["to"]:
        errors["window"] = ["from must be before to."]
    if errors:
        raise WindowError("bad window", errors)
    return values["from"], values["to"]


def _capped(window: Window) -> Window:
    if window.buckets > MAX_CANDLES:
        raise TooManyCandles(window.buckets, window.resolution)
    return window

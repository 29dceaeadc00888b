"""Time windows read from the user's words, with exact UTC bounds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chat.timewords import HOUR_MS, MINUTE_MS, find_window

# Wednesday 2026-12-09 12:30 UTC
NOW = int(datetime(2026, 12, 9, 12, 30, tzinfo=UTC).timestamp() * 1000)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("trades in the last hour", NOW - HOUR_MS, None),
        ("volume last 3 hours", NOW - 3 * HOUR_MS, None),
        ("past three hours", NOW - 3 * HOUR_MS, None),
        ("over the past 60 minutes", NOW - 60 * MINUTE_MS, None),
        ("last 24h", NOW - 24 * HOUR_MS, None),
        ("last week", NOW - 7 * 24 * HOUR_MS, None),
        ("today", at(2026, 12, 9), None),
        ("yesterday", at(2026, 12, 8), at(2026, 12, 9)),
        ("this week", at(2026, 12, 7), None),
        ("this month", at(2026, 12, 1), None),
        ("since monday", at(2026, 12, 7), None),
        ("since thursday", at(2026, 12, 3), None),
        ("since 9 utc", at(2026, 12, 9, 9), None),
        ("since 2026-03-01", at(2026, 3, 1), None),
        ("in march", at(2026, 3, 1), at(2026, 4, 1)),
        ("in december", at(2026, 12, 1), at(2027, 1, 1)),
        ("in march 2025", at(2025, 3, 1), at(2025, 4, 1)),
        ("on 2026-03-05", at(2026, 3, 5), at(2026, 3, 6)),
        ("on march 5th", at(2026, 3, 5), at(2026, 3, 6)),
        ("between 9 and 10 utc", at(2026, 12, 9, 9), at(2026, 12, 9, 10)),
        ("from 09:30 to 10:00", at(2026, 12, 9, 9, 30), at(2026, 12, 9, 10)),
        ("between 1pm and 2pm", at(2026, 12, 8, 13), at(2026, 12, 8, 14)),
    ],
)
def test_windows(text: str, start: int, end: int | None) -> None:
    window = find_window(text, NOW)
    assert window is not None, text
    assert (window.start_ms, window.end_ms) == (start, end)
    assert text[window.span[0] : window.span[1]].strip()


def test_no_window_and_impossible_dates() -> None:
    assert find_window("latest price of btc", NOW) is None
    assert find_window("top 3 trades", NOW) is None
    assert find_window("on 2026-02-31", NOW) is None


def test_restated_bounds() -> None:
    window = find_window("yesterday", NOW)
    assert window is not None
    assert window.restated() == "2026-12-08 00:00–2026-12-09 00:00 UTC"  # noqa: RUF001
    rolling = find_window("last hour", NOW)
    assert rolling is not None and rolling.restated() == "2026-12-09 11:30–now UTC"  # noqa: RUF001

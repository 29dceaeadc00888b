"""Time windows in the user's words, resolved against a clock.

``find_window(text, now_ms)`` reads one window from a lower-cased question:

- rolling: "last hour", "past 3 hours", "in the last 60 minutes", "last 24h",
  "previous 2 days", "last week" (the last 7 days, as a rolling window);
- calendar: "today", "yesterday", "this week" (since Monday 00:00 UTC),
  "this month", "this year", "in March" (the latest March that has begun),
  "in March 2026", "on 2026-03-05", "on March 5";
- open: "since Monday", "since yesterday", "since 9 utc", "since 2026-03-01";
- clock: "between 9 and 10 UTC", "from 09:30 to 10:00" (today, UTC).

The result carries the character span it consumed (so that the parser can
tell what was left unused) and a restatement with exact UTC bounds: an
analyst sees which window was computed, not only the words. Every window
is half-open, ``start <= t < end``; ``end`` is None for "until now".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

# A rolling month is 30 days and a rolling year 365 ("the last 3 months");
# calendar months and years are "this month", "in March", "this year".
UNITS_MS = {
    "second": 1000,
    "minute": MINUTE_MS,
    "hour": HOUR_MS,
    "day": DAY_MS,
    "week": 7 * DAY_MS,
    "month": 30 * DAY_MS,
    "year": 365 * DAY_MS,
}
UNIT_ALIASES = {
    "s": "second",
    "sec": "second",
    "secs": "second",
    "second": "second",
    "seconds": "second",
    "m": "minute",
    "min": "minute",
    "mins": "minute",
    "minute": "minute",
    "minutes": "minute",
    "h": "hour",
    "hr": "hour",
    "hrs": "hour",
    "hour": "hour",
    "hours": "hour",
    "d": "day",
    "day": "day",
    "days": "day",
    "w": "week",
    "wk": "week",
    "week": "week",
    "weeks": "week",
    "month": "month",
    "months": "month",
    "year": "year",
    "years": "year",
}
NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "sixty": 60,
}
MONTHS = {
    name: index + 1
    for index, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for name in names
}
# Words the time phrases are made of (typo correction aims at them too).
TIME_WORDS: tuple[str, ...] = ("today", "yesterday", "week", "month", "year", "since", "past", "previous", "last")
TIME_WORDS += ("hour", "minute", "hours", "minutes", "days", "weeks", "months", "between")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_NUM = r"(\d+|" + "|".join(NUMBER_WORDS) + r")"
_UNIT = r"(" + "|".join(sorted(UNIT_ALIASES, key=len, reverse=True)) + r")"
_MONTH = r"(" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")"
_LEAD = r"(?:(?:in|over|during|for|within)\s+)?(?:the\s+)?"
ROLLING = re.compile(rf"\b{_LEAD}(?:last|past|previous|recent)\s+{_NUM}\s*{_UNIT}\b")
ROLLING_ONE = re.compile(rf"\b{_LEAD}(?:last|past|previous)\s+(second|minute|hour|day|week)\b")
CALENDAR = re.compile(r"\b(?:so\s+far\s+)?(today|yesterday|this\s+(?:week|month|year))(?:\s+so\s+far)?\b")
MONTH_IN = re.compile(rf"\b(?:in|during|for)\s+{_MONTH}(?:\s+(\d{{4}}))?\b")
ISO_DAY = re.compile(r"\b(?:on\s+)?(\d{4})-(\d{2})-(\d{2})\b")
MONTH_DAY = re.compile(rf"\bon\s+{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b")
SINCE = re.compile(
    r"\bsince\s+(yesterday|today|last\s+week|"
    + "|".join(WEEKDAYS)
    + r"|(\d{4})-(\d{2})-(\d{2})|(\d{1,2})(?::(\d{2}))?\s*(am|pm)?(?:\s*utc)?)\b"
)
CLOCK = re.compile(
    r"\b(?:between|from)\s+(\d{1,2})(?::(\d{2}))?\s*(am|pm)?\s*(?:and|to|-|until|till)\s+"
    r"(\d{1,2})(?::(\d{2}))?\s*(am|pm)?(?:\s*(?:utc|gmt|z))?\b"
)


@dataclass(frozen=True)
class Window:
    start_ms: int
    end_ms: int | None
    words: str  # as the user said it ("yesterday", "the last 3 hours")
    span: tuple[int, int]  # characters of the question it was read from

    def restated(self) -> str:
        """Exact bounds: '2026-12-06 00:00 to 2026-12-07 00:00 UTC' with an en dash."""
        end = _fmt(self.end_ms) if self.end_ms is not None else "now"
        return f"{_fmt(self.start_ms)}–{end} UTC"  # noqa: RUF001 - an en dash between bounds


def _fmt(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _count(word: str) -> int:
    return NUMBER_WORDS[word] if word in NUMBER_WORDS else int(word)


def _hour(hour: str, minute: str | None, meridiem: str | None) -> int:
    value = int(hour) % 24
    if meridiem == "pm" and value < 12:
        value += 12
    if meridiem == "am" and value == 12:
        value = 0
    return value * HOUR_MS + int(minute or 0) * MINUTE_MS


def find_window(text: str, now_ms: int) -> Window | None:
    """The first time window of ``text`` (lower-cased), or None."""
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for reader in (_rolling, _calendar, _since, _clock, _month, _day):
        try:
            window = reader(text, now_ms, now, midnight)
        except ValueError:  # a date that does not exist ("2026-02-31")
            continue
        if window is not None:
            return window
    return None


def _rolling(text: str, now_ms: int, now: datetime, midnight: datetime) -> Window | None:
    match = ROLLING.search(text)
    if match:
        count, unit = _count(match.group(1)), UNIT_ALIASES[match.group(2)]
    else:
        match = ROLLING_ONE.search(text)
        if match is None:
            return None
        count, unit = 1, match.group(1)
    count = max(1, min(count, 100_000))
    words = f"the last {count} {unit}s" if count > 1 else f"the last {unit}"
    return Window(now_ms - count * UNITS_MS[unit], None, words, match.span())


def _calendar(text: str, now_ms: int, now: datetime, midnight: datetime) -> Window | None:
    match = CALENDAR.search(text)
    if match is None:
        return None
    word = " ".join(match.group(1).split())
    if word == "today":
        return Window(_ms(midnight), None, "today", match.span())
    if word == "yesterday":
        return Window(_ms(midnight - timedelta(days=1)), _ms(midnight), "yesterday", match.span())
    if word == "this week":
        return Window(_ms(midnight - timedelta(days=midnight.weekday())), None, "this week", match.span())
    if word == "this month":
        return Window(_ms(midnight.replace(day=1)), None, "this month", match.span())
    return Window(_ms(midnight.replace(month=1, day=1)), None, "this year", match.span())


def _since(text: str, now_ms: int, now: datetime, midnight: datetime) -> Window | None:
    match = SINCE.search(text)
    if match is None:
        return None
    word = " ".join(match.group(1).split())
    words = f"since {word}"
    if word == "yesterday":
        start = midnight - timedelta(days=1)
    elif word == "today":
        start = midnight
    elif word == "last week":
        start = midnight - timedelta(days=midnight.weekday() + 7)
    elif word in WEEKDAYS:
        # The latest such day that has begun (today if it is that day).
        start = midnight - timedelta(days=(midnight.weekday() - WEEKDAYS.index(word)) % 7)
    elif match.group(2):
        start = datetime(int(match.group(2)), int(match.group(3)), int(match.group(4)), tzinfo=UTC)
    else:
        offset = _hour(match.group(5), match.group(6), match.group(7))
        start = midnight + timedelta(milliseconds=offset)
        if start > now:
            start -= timedelta(days=1)
        words += "" if "utc" in word else " UTC"
    return Window(_ms(start), None, words, match.span())


def _clock(text: str, now_ms: int, now: datetime, midnight: datetime) -> Window | None:
    match = CLOCK.search(text)
    if match is None:
        return None
    start_meridiem = match.group(3) or match.group(6)
    start = _hour(match.group(1), match.group(2), start_meridiem)
    end = _hour(match.group(4), match.group(5), match.group(6))
    if end <= start:
        end += DAY_MS
    day = midnight if _ms(midnight) + start <= now_ms else midnight - timedelta(days=1)
    base = _ms(day)
    return Window(base + start, base + end, match.group(0).strip(), match.span())


def _month(text: str, now_ms: int, now: datetime, midnight: datetime) -> Window | None:
    match = MONTH_IN.search(text)
    if match is None:
        return None
    month = MONTHS[match.group(1)]
    year = int(match.group(2)) if match.group(2) else (now.year if month <= now.month else now.year - 1)
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return Window(_ms(start), _ms(end), f"in {start.strftime('%B %Y')}", match.span())


def _day(text: str, now_ms: int, now: datetime, midnight: datetime) -> Window | None:
    match = ISO_DAY.search(text)
    if match:
        start = datetime(int(match.group(1)), int(match.group(2)), int(match.group(3)), tzinfo=UTC)
    else:
        match = MONTH_DAY.search(text)
        if match is None:
            return None
        month = MONTHS[match.group(1)]
        year = now.year if (month, int(match.group(2))) <= (now.month, now.day) else now.year - 1
        start = datetime(year, month, int(match.group(2)), tzinfo=UTC)
    return Window(_ms(start), _ms(start + timedelta(days=1)), f"on {start.date().isoformat()}", match.span())

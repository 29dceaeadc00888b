"""Answers composed from results: a short sentence plus a compact table,
stating only what the rows show (no extrapolation, no invented context).

Token counts of the built-in translator are counted here: a token is a run
of word characters or one punctuation mark of the streamed answer
(``count_tokens``), which is what ``chat_response.tokens`` reports for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from chat.translators.base import Translation

MAX_TABLE_ROWS = 20
MAX_CELL = 80
TIME_COLUMNS = frozenset(
    {"ts", "first_seen", "last_seen", "created_at", "listed_at", "delisted_at", "day", "started_at", "finished_at"}
)
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_DELTA_RE = re.compile(r"\S+\s*|\s+")
WORDS_PER_DELTA = 4


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def deltas(text: str) -> Iterator[str]:
    """The answer in small pieces (a few words, or one line of a table)."""
    for line in text.splitlines(keepends=True):
        if line.startswith("|"):
            yield line
            continue
        pieces = _DELTA_RE.findall(line)
        for start in range(0, len(pieces), WORDS_PER_DELTA):
            yield "".join(pieces[start : start + WORDS_PER_DELTA])


def format_value(name: str, kind: str, value: Any) -> str:
    if value is None:
        return "–"  # noqa: RUF001 - a typographic dash for a missing value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if (name in TIME_COLUMNS or kind == "timestamp") and isinstance(value, int) and value > 10**11:
        moment = datetime.fromtimestamp(value / 1000, tz=UTC)
        text = moment.strftime("%Y-%m-%d %H:%M:%S")
        if value % 1000:
            text += f".{value % 1000:03d}"
        return text + "Z"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.10g}" if abs(value) >= 1e-4 else f"{value:.6g}"
    if isinstance(value, str) and kind in ("decimal", "unknown"):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return _cell(value)
        if number.is_finite():
            return format(number.normalize(), "f")
    if isinstance(value, (dict, list)):
        return _cell(str(value))
    return _cell(str(value))


def _cell(text: str) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table(schema: list[dict[str, str]], rows: list[list[Any]]) -> str:
    names = [column["name"] for column in schema]
    kinds = [column.get("type", "") for column in schema]
    lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
    for row in rows[:MAX_TABLE_ROWS]:
        cells = [format_value(name, kind, value) for name, kind, value in zip(names, kinds, row, strict=False)]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if len(rows) > MAX_TABLE_ROWS:
        text += f"…and {len(rows) - MAX_TABLE_ROWS} more rows (the query returned {len(rows)}).\n"
    return text


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def compose(
    translation: Translation, schema: list[dict[str, str]], rows: list[list[Any]], *, truncated: bool = False
) -> str:
    description = translation.text
    cut = " (cut at the row limit)" if truncated else ""
    if translation.shape == "value" and len(rows) == 1 and len(rows[0]) == 1:
        column = schema[0] if schema else {"name": "", "type": ""}
        value = rows[0][0]
        if value is None:
            return _sentence(f"{description}: no rows matched, so there is no value.") + "\n"
        unit = f" {translation.unit}" if translation.unit else ""
        return _sentence(f"{description} is {format_value(column['name'], column.get('type', ''), value)}{unit}.\n")
    if not rows:
        return _sentence(f"no rows matched: {description}.") + "\n"
    if translation.shape == "labels":
        active = sum(1 for row in rows if row[-1] in (True, 1))
        head = _sentence(f"{description}: {len(rows)} label(s), {active} in force{cut}.")
        return head + "\n\n" + table(schema, rows)
    count = len(rows)
    head = _sentence(f"{description}: {count} row{'s' if count != 1 else ''}{cut}.")
    return head + "\n\n" + table(schema, rows)


def compose_analysis(result: dict[str, Any]) -> str:
    """A risk analysis (compliance.analysis) in a few lines."""
    address, chain = result.get("address"), result.get("chain")
    if not result.get("known"):
        return (
            f"{address} has never been seen on {chain} in the data here, so the analysis has nothing to score: "
            f"risk score {result.get('riskScore', 0)} ({result.get('riskLevel', 'low')}). I ran the compliance "
            "analysis service directly (no SQL).\n"
        )
    lines = [
        (
            f"Risk of {address} on {chain}: score {result['riskScore']} of 100, level {result['riskLevel']} "
            f"(compliance analysis over {result.get('hops')} hops; I ran the analysis service directly, no SQL)."
        )
    ]
    signals = result.get("signals") or []
    if signals:
        lines.append("")
        lines.append("| signal | rule | severity | contribution |")
        lines.append("|---|---|---|---|")
        lines.extend(
            f"| {_cell(str(signal.get('type', '')))} | {_cell(str(signal.get('rule', '')))} | "
            f"{signal.get('severity', '')} | {signal.get('contribution', '')} |"
            for signal in signals[:10]
        )
    else:
        lines.append("No risk signals were found within those hops.")
    if result.get("truncated"):
        lines.append("The graph expansion hit its bounds, so the result is truncated.")
    return "\n".join(lines) + "\n"

"""Result values as JSON, the same on SQLite and PostgreSQL.

Timestamps become epoch milliseconds (the wire's one time format): SQLite
returns Django's text timestamps, PostgreSQL returns datetimes. Decimals
typed ``decimal`` stay exact as strings; other numbers become JSON numbers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

MAX_SAFE_INTEGER = 2**53
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // MILLISECOND


def _timestamp(value: Any) -> Any:
    if isinstance(value, datetime):
        return _epoch_ms(value)
    if isinstance(value, date):
        return _epoch_ms(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, str):
        try:
            return _epoch_ms(datetime.fromisoformat(value.strip()))
        except ValueError:
            return value
    return _plain(value)


def _integer(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < MAX_SAFE_INTEGER:
        return int(value)
    return _plain(value)


def _float(value: Any) -> Any:
    if isinstance(value, (Decimal, int)) and not isinstance(value, bool):
        return float(value)
    return _plain(value)


def _decimal(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (Decimal, int, float)):
        return str(value)
    return _plain(value)


def _boolean(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return _plain(value)


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return _plain(value)


def _date(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return _plain(value)


def _plain(value: Any) -> Any:
    """Any driver value as JSON, when the column's type says nothing more."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value() and abs(value) < MAX_SAFE_INTEGER:
            return int(value)
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, datetime):
        return _epoch_ms(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds() * 1000
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return str(value)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "timestamp": _timestamp,
    "integer": _integer,
    "float": _float,
    "decimal": _decimal,
    "boolean": _boolean,
    "json": _json,
    "date": _date,
}


def converters(schema: Sequence[dict[str, str]]) -> list[Callable[[Any], Any]]:
    return [CONVERTERS.get(column["type"], _plain) for column in schema]


def guess_type(value: Any) -> str:
    """A public type for a column the compiler could not type, from a value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, date):
        return "date"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (dict, list)):
        return "json"
    return "unknown"

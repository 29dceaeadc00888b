"""Result values as JSON, the same on SQLite and PostgreSQL.

Timestamps become epoch milliseconds (the wire's one time format): SQLite
returns Django's text timestamps, PostgreSQL returns datetimes. Decimals
typed ``decimal`` stay exact as strings; other numbers become JSON numbers.
"""

from __future__ import annotations

import json
import math
import operator
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import repeat
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


# Result values are converted a column of a chunk at a time: values whose
# Python type the column's converter would return unchanged are left alone
# when the whole column is of such types (one C-level pass over the column
# instead of one Python call per value), the common conversions run through
# C-level ``map``, and anything unusual falls back to the converter per value
# (same results, only slower). Streaming a large result spends most of its
# server time here otherwise.
NoneType = type(None)
_UNCHANGED: dict[str, frozenset[type]] = {
    "integer": frozenset({int, bool, NoneType}),
    "decimal": frozenset({str, bool, NoneType}),
    "boolean": frozenset({bool, NoneType}),
    "date": frozenset({str, NoneType}),
    "timestamp": frozenset({int, NoneType}),
    "text": frozenset({str, int, bool, NoneType}),
}
_PLAIN_UNCHANGED: frozenset[type] = frozenset({str, int, bool, NoneType})
_NUMBERS: frozenset[type] = frozenset({Decimal, int, float})
NAIVE_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 - naive on purpose: the epoch of naive values

Column = Sequence[Any]
# A converted column, and whether its values are all str, int, bool or None.
ColumnConverter = Callable[[Column], tuple[Column, bool]]
_PLAIN_TYPES: frozenset[type] = frozenset({str, int, bool, NoneType})


class PlainRows(list[list[Any]]):
    """Converted rows whose values are all str, int, bool or None (no
    floats, containers or other types): JSON that any encoder writes the
    same way, so ``realtime.protocol`` may use its faster one."""

    __slots__ = ()


def _per_value(convert: Callable[[Any], Any], unchanged: frozenset[type]) -> ColumnConverter:
    def column(values: Column) -> tuple[Column, bool]:
        kinds = set(map(type, values))
        if kinds <= unchanged:
            return values, kinds <= _PLAIN_TYPES
        return list(map(convert, values)), False

    return column


def _epoch_ms_column(moments: Column) -> list[int]:
    """Datetimes all aware or all naive (naive ones are UTC); TypeError
    otherwise."""
    epoch = EPOCH if moments[0].tzinfo is not None else NAIVE_EPOCH
    # Equal to ``delta // MILLISECOND`` (floored), in half the time.
    return [
        delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
        for delta in map(operator.sub, moments, repeat(epoch))
    ]


def _timestamp_column(values: Column) -> tuple[Column, bool]:
    kinds = set(map(type, values))
    if kinds <= _UNCHANGED["timestamp"]:
        return values, True
    try:
        if kinds == {datetime}:
            return _epoch_ms_column(values), True
        if kinds == {str}:
            # Django's SQLite text timestamps.
            return _epoch_ms_column(list(map(datetime.fromisoformat, values))), True
    except (TypeError, ValueError):
        pass
    return list(map(_timestamp, values)), False


def _float_column(values: Column) -> tuple[Column, bool]:
    kinds = set(map(type, values))
    if kinds == {float} and all(map(math.isfinite, values)):
        return values, False
    return list(map(_float, values)), False


def _decimal_column(values: Column) -> tuple[Column, bool]:
    kinds = set(map(type, values))
    if kinds <= _UNCHANGED["decimal"]:
        return values, True
    if kinds <= _NUMBERS:
        return list(map(str, values)), True
    return list(map(_decimal, values)), False


def _plain_column(values: Column) -> tuple[Column, bool]:
    return list(map(_plain, values)), False


def column_converters(schema: Sequence[dict[str, str]]) -> list[ColumnConverter]:
    result: list[ColumnConverter] = []
    for column in schema:
        kind = column["type"]
        if kind == "timestamp":
            result.append(_timestamp_column)
        elif kind == "float":
            result.append(_float_column)
        elif kind == "decimal":
            result.append(_decimal_column)
        else:
            convert = CONVERTERS.get(kind, _plain)
            unchanged: frozenset[type] = frozenset() if kind == "json" else _UNCHANGED.get(kind, _PLAIN_UNCHANGED)
            result.append(_per_value(convert, unchanged))
    return result


def rows_converter(schema: Sequence[dict[str, str]]) -> Callable[[Sequence[Sequence[Any]]], list[list[Any]]]:
    """Driver rows (tuples) -> JSON-ready rows (lists), as ``converters``
    would convert them value by value: a ``PlainRows`` when every value is
    a str, int, bool or None."""
    by_column = column_converters(schema)

    def convert(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        if not rows or not rows[0]:
            return [[] for _ in rows]
        columns: list[Column] = list(zip(*rows, strict=True))
        plain = True
        for index, values in enumerate(columns):
            converter = by_column[index] if index < len(by_column) else _plain_column
            columns[index], plain_column = converter(values)
            plain = plain and plain_column
        converted = map(list, zip(*columns, strict=True))
        return PlainRows(converted) if plain else list(converted)

    return convert


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

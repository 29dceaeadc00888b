"""An exact on-chain amount column on both stacks.

Amounts are integers in the asset's base unit (wei, satoshi, a token's
smallest unit) and reach 2**256 - 1, 78 digits. PostgreSQL stores them as
``numeric(78, 0)``. SQLite has no such type: a DECIMAL column has NUMERIC
affinity, which turns any value beyond 64 bits (10 ETH in wei already) into
a double with 15 significant digits. So on SQLite the column has no affinity
(declared ``blob``) and holds an INTEGER when the value fits 64 bits and,
beyond that, TEXT zero-padded to 78 digits. SQLite orders every INTEGER
before every TEXT, and padded texts compare as numbers, so ``=``, ``<``,
``>`` and ORDER BY stay numeric. SUM() in SQL on SQLite is not exact (it
overflows or goes through doubles): add amounts in Python there.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models

MAX_AMOUNT = 2**256 - 1
_DIGITS = 78
INT64_MAX = 2**63 - 1


def to_amount(value: Any) -> int:
    """An exact non-negative integer amount from an int, a Decimal or a
    decimal string (``"1000"``, ``"1.5E+21"``, ``"12.000"``); a fraction or a
    negative value is refused."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, int):
        amount = value
    else:
        text = str(value).strip()
        try:
            number = Decimal(text)
        except ArithmeticError:
            raise ValueError(f"not a number: {text[:40]!r}") from None
        if not number.is_finite() or number != number.to_integral_value():
            raise ValueError(f"not a whole amount of base units: {text[:40]!r}")
        amount = int(number)
    if not 0 <= amount <= MAX_AMOUNT:
        raise ValueError("amount out of range 0..2**256-1")
    return amount


def amount_db_value(value: int | None, vendor: str) -> int | str | None:
    """The parameter to send for an already-validated amount (hot path of bulk inserts)."""
    if vendor == "sqlite" and value is not None and value > INT64_MAX:
        return str(value).rjust(_DIGITS, "0")
    return value


class AmountField(models.Field):  # type: ignore[type-arg]
    description = "Non-negative integer amount in base units, up to 2**256 - 1"

    def db_type(self, connection: Any) -> str:
        if connection.vendor == "postgresql":
            return f"numeric({_DIGITS}, 0)"
        if connection.vendor == "sqlite":
            return "blob"
        return f"decimal({_DIGITS}, 0)"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("ascii")
        return int(value)

    def to_python(self, value: Any) -> int | None:
        if value is None:
            return None
        return to_amount(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or hasattr(value, "resolve_expression"):
            return value
        return to_amount(value)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        if isinstance(value, int):
            return amount_db_value(value, connection.vendor)
        return value

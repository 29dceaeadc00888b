"""An exact decimal column on both stacks."""

from __future__ import annotations

from typing import Any

from django.db import models


class ExactDecimalField(models.DecimalField):  # type: ignore[type-arg]
    """NUMERIC on PostgreSQL; TEXT on SQLite, whose NUMERIC affinity keeps
    only 15 significant digits (a stored value is converted to a double).
    Used for sums (candle volumes), which outgrow 15 digits where single
    prices and sizes do not. On SQLite SQL sees a string: compare and sum it
    in Python, not in SQL."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "sqlite":
            return "text"
        return super().db_type(connection)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        value = super().get_db_prep_value(value, connection, prepared)
        if connection.vendor == "sqlite" and value is not None and not hasattr(value, "as_sql"):
            return format(value, "f")
        return value

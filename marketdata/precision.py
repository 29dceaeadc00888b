"""The price precision of a market on the wire: how many decimals a chart
shows (``pricePrecision`` in ``market_data_response`` and
``market_chart_initial_data``; a charting library's ``priceFormat``).

An instrument's ``price_precision`` set by staff wins; otherwise it is the
most decimals any price of the candles sent has (prices are exact decimals
of at most 15 significant digits, which a float's shortest representation
gives back), at least ``MIN_PRECISION``. XRP-ETH at 0.000312 shows six
decimals, not 0.00.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

MIN_PRECISION = 2
MAX_PRECISION = 12
PRICE_FIELDS = ("open", "high", "low", "close")


def decimals(value: float) -> int:
    text = repr(float(value))
    if "e" in text or "E" in text:
        mantissa, _, exponent = text.lower().partition("e")
        places = len(mantissa.partition(".")[2].rstrip("0")) - int(exponent)
        return max(0, min(places, MAX_PRECISION))
    return min(len(text.partition(".")[2].rstrip("0")), MAX_PRECISION)


def price_precision(candles: Iterable[dict[str, Any]], configured: int | None = None) -> int:
    if configured is not None:
        return configured
    found = MIN_PRECISION
    for candle in candles:
        for name in PRICE_FIELDS:
            found = max(found, decimals(candle[name]))
    return found


def format_price(value: Decimal | float, precision: int | None) -> str:
    """A stored decimal for people: at ``precision`` decimals when the
    instrument has one, else without its trailing zeros (never the
    column's 18 places)."""
    number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    if precision is not None:
        return f"{number:,.{precision}f}"
    return f"{number.normalize():,f}"

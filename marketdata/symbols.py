"""Instrument symbols: ``BASE-QUOTE`` in capitals (``BTC-USD``)."""

from __future__ import annotations

import re

SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,20}-[A-Z0-9]{1,20}$")
VENUE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def split_symbol(symbol: str) -> tuple[str, str]:
    """``"BTC-USD"`` -> ``("BTC", "USD")``; ValueError if not BASE-QUOTE."""
    if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
        raise ValueError(f"expected BASE-QUOTE in capitals (BTC-USD), not {str(symbol)[:50]!r}")
    base, _, quote = symbol.partition("-")
    return base, quote

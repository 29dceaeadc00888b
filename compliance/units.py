"""Amounts in an asset's base units shown as decimal strings of its units."""

from __future__ import annotations

from decimal import Decimal


def format_units(base_units: int, decimals: int | None) -> str:
    """Base units as a plain decimal string of the asset's units (no exponent)."""
    if not decimals:
        return str(base_units)
    text = format(Decimal(base_units).scaleb(-decimals), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text

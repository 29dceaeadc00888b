"""Command-line values shared by the market data commands."""

from __future__ import annotations

from django.core.management.base import CommandError

from marketdata.symbols import split_symbol


def symbol_option(value: str) -> str:
    """A BASE-QUOTE symbol as given on the command line, in capitals;
    CommandError (with split_symbol's message) if it is not one."""
    symbol = value.upper()
    try:
        split_symbol(symbol)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return symbol

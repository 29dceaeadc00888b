"""Market data errors: what the services refuse, and why."""

from __future__ import annotations

from collections.abc import Iterable


class MarketDataError(Exception):
    pass


class UnknownSymbol(MarketDataError):
    def __init__(self, symbol: str) -> None:
        super().__init__(f"unknown symbol {symbol[:50]!r}")
        self.symbol = symbol


class UnknownVenue(MarketDataError):
    def __init__(self, venues: Iterable[str]) -> None:
        self.venues = sorted(venues)
        super().__init__("unknown venue " + ", ".join(repr(v[:40]) for v in self.venues[:10]))


class InvalidTrades(MarketDataError):
    """Some trades of a batch are invalid; nothing of the batch was stored.
    ``errors`` maps ``"<index>.<field>"`` to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(f"{len({key.split('.')[0] for key in errors})} invalid trade(s); nothing was stored")
        self.errors = errors

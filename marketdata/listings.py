"""Venues, instruments and the venue's own symbols for them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from django.db import transaction

from marketdata.errors import UnknownSymbol, UnknownVenue
from marketdata.models import Instrument, Venue, VenueSymbol
from marketdata.symbols import split_symbol
from marketdata.trades import TradeInput


@transaction.atomic
def ensure_listing(
    venue: str, symbol: str, *, native: str | None = None, venue_name: str | None = None
) -> tuple[Venue, Instrument]:
    """The venue and instrument, created if missing; with ``native``, the
    venue's own symbol for the instrument is recorded (or updated)."""
    base, quote = split_symbol(symbol)
    venue_row, _ = Venue.objects.get_or_create(code=venue, defaults={"name": venue_name or venue.title()})
    instrument, _ = Instrument.objects.get_or_create(symbol=symbol, defaults={"base": base, "quote": quote})
    if native:
        mapping, created = VenueSymbol.objects.get_or_create(
            venue=venue_row, instrument=instrument, defaults={"native": native}
        )
        if not created and mapping.native != native:
            mapping.native = native
            mapping.save(update_fields=["native"])
    return venue_row, instrument


def instrument_id(symbol: str) -> int:
    found = Instrument.objects.filter(symbol=symbol).values_list("id", flat=True).first()
    if found is None:
        raise UnknownSymbol(symbol)
    return found


def configured_precision(symbol: str) -> int | None:
    """The price precision staff set for the instrument, if any."""
    found: int | None = Instrument.objects.filter(symbol=symbol).values_list("price_precision", flat=True).first()
    return found


def venue_codes(codes: Iterable[str] | None) -> dict[int, str]:
    """id -> code of the requested venues (all without ``codes``)."""
    if codes is None:
        return dict(Venue.objects.values_list("id", "code"))
    wanted = set(codes)
    found = dict(Venue.objects.filter(code__in=wanted).values_list("id", "code"))
    missing = wanted - set(found.values())
    if missing:
        raise UnknownVenue(missing)
    return found


class Listing(NamedTuple):
    instrument_id: int
    venue_id: int
    venue: str
    symbol: str


def resolve_listings(batch: list[TradeInput]) -> tuple[dict[tuple[str, str], Listing], set[str]]:
    """(venue code, symbol as given) -> Listing for the batch, and the venue
    codes that exist. A symbol is BASE-QUOTE, or else the venue's native
    symbol (VenueSymbol)."""
    pairs = {(trade[0], trade[1]) for trade in batch if type(trade[0]) is str and type(trade[1]) is str}
    venues = dict(Venue.objects.filter(code__in={code for code, _ in pairs}).values_list("code", "id"))
    canonical = dict(Instrument.objects.filter(symbol__in={symbol for _, symbol in pairs}).values_list("symbol", "id"))
    found: dict[tuple[str, str], Listing] = {}
    for code, symbol in pairs:
        if code in venues and symbol in canonical:
            found[(code, symbol)] = Listing(canonical[symbol], venues[code], code, symbol)
    unresolved = {pair for pair in pairs if pair not in found and pair[0] in venues}
    if unresolved:
        natives = VenueSymbol.objects.filter(
            venue__code__in={code for code, _ in unresolved}, native__in={symbol for _, symbol in unresolved}
        ).values_list("venue__code", "native", "instrument_id", "instrument__symbol")
        for code, native, instrument, symbol in natives:
            if (code, native) in unresolved:
                found[(code, native)] = Listing(instrument, venues[code], code, symbol)
    return found, set(venues)

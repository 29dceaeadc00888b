"""Admin: venues and instruments (with their venue symbols) are edited here;
trades and candles are read-only and listed without counting whole tables."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from typing import Any, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.http import HttpRequest

from marketdata.models import Candle, Instrument, Trade, TradeSeries, Venue, VenueSymbol
from marketdata.precision import format_price
from realtime.admin import ReadOnlyAdmin

# A page count needs COUNT(*), which over millions of trades is the slowest
# part of a change list; counting stops here instead ("10000+" pages cap).
COUNT_LIMIT = 10_000


class CappedCountPaginator(Paginator):  # type: ignore[type-arg]  # the admin's changelist pages any model
    @cached_property
    def count(self) -> int:
        return int(cast(Any, self.object_list)[: COUNT_LIMIT + 1].count())


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ReadOnlyTableAdmin(ReadOnlyAdmin):
    """Read-only, and paged without counting the whole table."""

    show_full_result_count = False
    paginator = CappedCountPaginator


class VenueSymbolInline(admin.TabularInline):  # type: ignore[type-arg]
    model = VenueSymbol
    extra = 0


@admin.register(Venue)
class VenueAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("code", "name")
    search_fields = ("code", "name")


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("symbol", "base", "quote", "price_precision", "venue_list")
    search_fields = ("symbol", "base", "quote", "venue_symbols__native")
    list_filter = ("quote", "venue_symbols__venue")
    readonly_fields = ("symbol",)
    fields = ("symbol", "base", "quote")
    inlines = [VenueSymbolInline]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related("venue_symbols__venue")

    @admin.display(description="venue symbols")
    def venue_list(self, obj: Instrument) -> str:
        return ", ".join(f"{m.venue.code}:{m.native}" for m in obj.venue_symbols.all())


@admin.register(Trade)
class TradeAdmin(ReadOnlyTableAdmin):
    list_display = ("id", "instrument", "venue", "trade_id", "exchange_time", "price_shown", "size_shown", "side")
    list_filter = ("venue", "instrument", "side")
    search_fields = ("=trade_id",)
    list_select_related = ("venue", "instrument")
    ordering = ("-id",)

    @admin.display(description="exchange time (UTC)", ordering="ts")
    def exchange_time(self, obj: Trade) -> str:
        return _utc(obj.ts)

    @admin.display(description="price", ordering="price")
    def price_shown(self, obj: Trade) -> str:
        return format_price(obj.price, obj.instrument.price_precision)

    @admin.display(description="size", ordering="size")
    def size_shown(self, obj: Trade) -> str:
        return format_price(obj.size, None)


@admin.register(TradeSeries)
class TradeSeriesAdmin(ReadOnlyTableAdmin):
    list_display = ("instrument", "venue", "trades", "first_trade", "last_trade", "last_row_id")
    list_filter = ("venue", "instrument")
    search_fields = ("=instrument__symbol", "=venue__code")
    list_select_related = ("venue", "instrument")

    @admin.display(description="first trade (UTC)", ordering="first_ts")
    def first_trade(self, obj: TradeSeries) -> str:
        return _utc(obj.first_ts)

    @admin.display(description="last trade (UTC)", ordering="last_ts")
    def last_trade(self, obj: TradeSeries) -> str:
        return _utc(obj.last_ts)


@admin.register(Candle)
class CandleAdmin(ReadOnlyTableAdmin):
    list_display = (
        "instrument",
        "venue",
        "resolution",
        "open_time",
        "open_shown",
        "high_shown",
        "low_shown",
        "close_shown",
        "volume_shown",
        "trades",
    )
    list_filter = ("resolution", "venue", "instrument")
    search_fields = ("=instrument__symbol",)
    list_select_related = ("venue", "instrument")
    ordering = ("-id",)

    @admin.display(description="open time (UTC)", ordering="bucket")
    def open_time(self, obj: Candle) -> str:
        return _utc(obj.bucket)

    @admin.display(description="open")
    def open_shown(self, obj: Candle) -> str:
        return format_price(obj.open, obj.instrument.price_precision)

    @admin.display(description="high")
    def high_shown(self, obj: Candle) -> str:
        return format_price(obj.high, obj.instrument.price_precision)

    @admin.display(description="low")
    def low_shown(self, obj: Candle) -> str:
        return format_price(obj.low, obj.instrument.price_precision)

    @admin.display(description="close")
    def close_shown(self, obj: Candle) -> str:
        return format_price(obj.close, obj.instrument.price_precision)

    @admin.display(description="volume")
    def volume_shown(self, obj: Candle) -> str:
        return format_price(obj.volume, None)

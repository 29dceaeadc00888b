"""Venues, instruments, trades and stored candle roll-ups.

A trade is identified by its venue, instrument and the exchange's trade id:
unique per venue *and instrument*, because exchanges such as Binance number
trades per symbol. Times are exchange timestamps in epoch milliseconds.
Prices and sizes are exact decimals with at most 15 significant digits and 18
decimal places (services enforce it): SQLite keeps exactly that many digits
in a NUMERIC column, PostgreSQL keeps all of them.

Candles of the resolutions in ``STORED_RESOLUTIONS`` (1s 5s 1m 15m 4h) are
stored per venue and updated by ingestion in the same transaction as the
trades they count; the other resolutions of 1s and coarser are rolled up from
them, and sub-second candles built from trades, when asked.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models

from marketdata.fields import ExactDecimalField
from marketdata.resolutions import STORED_RESOLUTIONS
from marketdata.symbols import SYMBOL_RE, VENUE_RE

PRICE_DIGITS = 38
PRICE_PLACES = 18


class Venue(models.Model):
    code = models.CharField(max_length=32, unique=True, help_text="Lower-case code, e.g. binance.")
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        if not VENUE_RE.match(self.code or ""):
            raise ValidationError({"code": "Lower-case letters, digits, - and _ (at most 32)."})


class Instrument(models.Model):
    symbol = models.CharField(max_length=41, unique=True, editable=False, help_text="BASE-QUOTE, e.g. BTC-USD.")
    base = models.CharField(max_length=20, help_text="Base asset, e.g. BTC.")
    quote = models.CharField(max_length=20, help_text="Quote asset, e.g. USD.")
    price_precision = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(12)],
        help_text="Decimals a chart shows for prices; empty: the most any price sent has (at least 2).",
    )

    class Meta:
        ordering = ["symbol"]

    def __str__(self) -> str:
        return self.symbol

    def clean(self) -> None:
        self.base, self.quote = (self.base or "").upper(), (self.quote or "").upper()
        if not SYMBOL_RE.match(f"{self.base}-{self.quote}"):
            raise ValidationError("Base and quote are 1 to 20 capital letters or digits.")

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.symbol = f"{self.base}-{self.quote}"
        super().save(*args, **kwargs)


class VenueSymbol(models.Model):
    """How a venue names an instrument (``XRPETH`` on Binance for XRP-ETH)."""

    venue = models.ForeignKey(Venue, on_delete=models.CASCADE, related_name="symbols")
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="venue_symbols")
    native = models.CharField(max_length=64, help_text="The venue's own symbol.")

    class Meta:
        ordering = ["venue__code", "native"]
        constraints = [
            models.UniqueConstraint(fields=["venue", "native"], name="venue_symbol_unique_native"),
            models.UniqueConstraint(fields=["venue", "instrument"], name="venue_symbol_unique_instrument"),
        ]

    def __str__(self) -> str:
        return f"{self.native} on {self.venue_id}"


class Side(models.TextChoices):
    BUY = "buy", "Buy (taker bought)"
    SELL = "sell", "Sell (taker sold)"


class Trade(models.Model):
    # The composite indexes below lead with these columns; single-column FK
    # indexes would only slow ingestion down.
    venue = models.ForeignKey(Venue, on_delete=models.PROTECT, related_name="trades", db_index=False)
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="trades", db_index=False)
    trade_id = models.CharField(max_length=64, help_text="The exchange's trade id.")
    ts = models.BigIntegerField(help_text="Exchange timestamp, epoch milliseconds (UTC).")
    price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    size = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, help_text="Base quantity.")
    side = models.CharField(max_length=4, choices=Side.choices, help_text="Taker side.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["venue", "instrument", "trade_id"], name="trade_unique_exchange_id"),
            models.CheckConstraint(condition=models.Q(price__gt=0, size__gt=0), name="trade_positive_price_size"),
            models.CheckConstraint(condition=models.Q(side__in=["buy", "sell"]), name="trade_side_valid"),
        ]
        indexes = [models.Index(fields=["instrument", "ts"], name="trade_instrument_ts")]

    def __str__(self) -> str:
        return f"{self.venue_id}:{self.trade_id} {self.side} {self.size} @ {self.price}"


class TradeSeries(models.Model):
    """The trades of one instrument on one venue, summarised by ingestion in
    the transaction that stores them: counts without COUNT(*), and
    ``last_row_id``, the highest Trade id of the series, which grows in
    commit order (writers of a series are serialised until commit) and so
    tells a live chart which published trades a snapshot already counts."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="series", db_index=False)
    venue = models.ForeignKey(Venue, on_delete=models.CASCADE, related_name="series", db_index=False)
    trades = models.BigIntegerField(default=0)
    first_ts = models.BigIntegerField(help_text="Earliest exchange timestamp, epoch ms.")
    last_ts = models.BigIntegerField(help_text="Latest exchange timestamp, epoch ms.")
    last_row_id = models.BigIntegerField(help_text="Highest Trade id of the series.")

    class Meta:
        verbose_name_plural = "trade series"
        constraints = [models.UniqueConstraint(fields=["instrument", "venue"], name="trade_series_unique")]

    def __str__(self) -> str:
        return f"{self.instrument_id} on {self.venue_id}"


class Candle(models.Model):
    """A stored roll-up: one venue, one instrument, one bucket of a stored
    resolution. ``open_ts``/``open_trade_id`` and ``close_ts``/``close_trade_id``
    identify its first and last trade so that later trades merge exactly."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="candles", db_index=False)
    venue = models.ForeignKey(Venue, on_delete=models.CASCADE, related_name="candles", db_index=False)
    resolution = models.CharField(max_length=5, choices=[(r, r) for r in STORED_RESOLUTIONS])
    bucket = models.BigIntegerField(help_text="Bucket open time, epoch milliseconds (UTC).")
    open = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    high = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    low = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    close = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    volume = ExactDecimalField(max_digits=48, decimal_places=PRICE_PLACES)
    trades = models.BigIntegerField()
    open_ts = models.BigIntegerField()
    open_trade_id = models.CharField(max_length=64)
    close_ts = models.BigIntegerField()
    close_trade_id = models.CharField(max_length=64)

    class Meta:
        constraints = [
            # Leads with (instrument, resolution, bucket): serves both the
            # all-venue range scan and the per-venue upsert key.
            models.UniqueConstraint(
                fields=["instrument", "resolution", "bucket", "venue"], name="candle_unique_bucket"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.venue_id} {self.resolution} @ {self.bucket}"

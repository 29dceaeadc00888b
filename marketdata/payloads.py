"""Payload serializers of the market data events, and ``WindowField``, the
window of time a request names (also used by compliance's flow queries)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from marketdata.live import INITIAL_CANDLES
from marketdata.resolutions import RESOLUTIONS, duration_ms
from marketdata.symbols import SYMBOL_RE, VENUE_RE
from marketdata.windows import MAX_CANDLES, MAX_TIMESTAMP_MS, WindowError, parse_range
from realtime.handlers import ErrorPayload
from realtime.payloads import Payload
from realtime.protocol import now_ms

__all__ = [
    "CandlePayload",
    "ChartInitialPayload",
    "ChartLiveUpdatePayload",
    "MarketDataErrorPayload",
    "MarketDataRequest",
    "MarketDataResponse",
    "WindowField",
]

MAX_VENUES = 20


class WindowField(serializers.Field):  # type: ignore[misc]
    """A duration string (``"15m"``, ``"24h"``: the last such span) or
    ``{from, to}`` in epoch ms.

    By default the value is kept as given (the duration stripped, or
    ``{"from", "to"}``) for the service to resolve against its resolution and
    clock. With ``as_range`` it is resolved here to ``(start, end)`` epoch
    ms: a duration ends now, and ``to`` is capped at MAX_TIMESTAMP_MS.
    ``subject`` names what the range selects and ``examples`` the durations
    quoted in the error message."""

    def __init__(self, *, subject: str, examples: str, as_range: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.examples = examples
        self.as_range = as_range
        self.json_schema = {
            "oneOf": [
                {"type": "string", "pattern": "^[0-9]{1,12}(ms|s|m|h|d|w)$", "description": "The last such span."},
                {
                    "type": "object",
                    "properties": {"from": {"type": "integer"}, "to": {"type": "integer"}},
                    "required": ["from", "to"],
                    "additionalProperties": False,
                    "description": f"{subject} with timestamp in [from, to), epoch ms.",
                },
            ]
        }

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                span = duration_ms(data)
            except ValueError as exc:
                raise serializers.ValidationError(str(exc)) from None
            if not self.as_range:
                return data.strip()
            end = now_ms()
            return max(0, end - span), end
        if isinstance(data, dict):
            try:
                start, end = parse_range(data)
            except WindowError as exc:
                raise serializers.ValidationError(
                    [f"{field}: {' '.join(messages)}" for field, messages in exc.errors.items()]
                ) from None
            return (start, min(end, MAX_TIMESTAMP_MS)) if self.as_range else {"from": start, "to": end}
        raise serializers.ValidationError(f"Expected a duration string ({self.examples}) or {{from, to}} in epoch ms.")

    def to_representation(self, value: Any) -> Any:
        return value


class MarketDataRequest(Payload):
    symbol = serializers.RegexField(SYMBOL_RE, max_length=41, help_text="BASE-QUOTE, e.g. BTC-USD.")
    resolution = serializers.ChoiceField(list(RESOLUTIONS))
    venues = serializers.ListField(
        child=serializers.RegexField(VENUE_RE, max_length=32),
        required=False,
        allow_empty=False,
        max_length=MAX_VENUES,
        help_text="Venue codes; without it, all venues are merged into one series.",
    )
    window = WindowField(
        subject="Candles",
        examples="15m, 24h",
        required=False,
        help_text=f"A duration or {{from, to}}; default the last 500 buckets. At most {MAX_CANDLES} candles.",
    )


class CandlePayload(Payload):
    timestamp = serializers.IntegerField(help_text="Bucket open time, epoch ms (inclusive), aligned to the epoch.")
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.FloatField(help_text="Base quantity traded in the bucket.")
    trades = serializers.IntegerField(help_text="Trades in the bucket (Binance: aggTrades).")


PRECISION_HELP = (
    "Decimals to show prices with (a chart's price format): set per instrument by staff, else the most any "
    "price sent has, at least 2."
)


class MarketDataResponse(Payload):
    symbol = serializers.CharField()
    resolution = serializers.ChoiceField(list(RESOLUTIONS))
    pricePrecision = serializers.IntegerField(min_value=0, max_value=12, help_text=PRECISION_HELP)
    candles = CandlePayload(many=True, help_text="Oldest first; buckets without trades are omitted.")


class MarketDataErrorPayload(ErrorPayload):
    maxCandles = serializers.IntegerField(required=False, help_text="Set when the window asked for too many candles.")


class ChartInitialPayload(Payload):
    symbol = serializers.CharField()
    resolution = serializers.ChoiceField(list(RESOLUTIONS))
    pricePrecision = serializers.IntegerField(min_value=0, max_value=12, help_text=PRECISION_HELP)
    series = CandlePayload(
        many=True,
        help_text=f"The last {INITIAL_CANDLES} buckets with trades, oldest first, the forming one last.",
    )


class ChartLiveUpdatePayload(Payload):
    symbol = serializers.CharField()
    resolution = serializers.ChoiceField(list(RESOLUTIONS))
    timestamp = serializers.IntegerField(help_text="Bucket open time: the same as the last bar replaces it.")
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.FloatField()
    trades = serializers.IntegerField()

"""REST read of candles: ``GET /api/market/candles``, the HTTP twin of the
``request_market_data`` event (same resolutions, window rules and limits,
through the same read service)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from marketdata import services
from marketdata.payloads import MarketDataResponse
from marketdata.resolutions import RESOLUTIONS
from marketdata.symbols import SYMBOL_RE, VENUE_RE
from marketdata.windows import MAX_CANDLES, MAX_TIMESTAMP_MS

MAX_VENUES = 20
EPOCH_MS = {"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP_MS}
_VENUE = VENUE_RE.pattern.strip("^$")
VENUES_PATTERN = f"^{_VENUE}(,{_VENUE}){{0,{MAX_VENUES - 1}}}$"


class CandleQuery(serializers.Serializer):
    symbol = serializers.RegexField(SYMBOL_RE, max_length=41)
    resolution = serializers.ChoiceField(list(RESOLUTIONS))
    venues = serializers.CharField(required=False, max_length=MAX_VENUES * 33)
    # ``from`` is a keyword: the field is renamed in the constructor below.
    from_ = serializers.IntegerField(required=False, min_value=0, max_value=MAX_TIMESTAMP_MS)
    to = serializers.IntegerField(required=False, min_value=0, max_value=MAX_TIMESTAMP_MS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["from"] = self.fields.pop("from_")

    def validate_venues(self, value: str) -> list[str]:
        venues = [venue.strip() for venue in value.split(",")]
        if not 0 < len(venues) <= MAX_VENUES or not all(VENUE_RE.match(venue) for venue in venues):
            raise serializers.ValidationError(f"Expected 1 to {MAX_VENUES} comma-separated venue codes.")
        return venues

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "from_" in attrs:  # the renamed field keeps its attribute name
            attrs["from"] = attrs.pop("from_")
        if ("from" in attrs) != ("to" in attrs):
            raise serializers.ValidationError({"window": ["Give both from and to, or neither."]})
        if "from" in attrs and attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"window": ["from must be before to."]})
        return attrs


class CandleFailure(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    errors = serializers.DictField(required=False)
    maxCandles = serializers.IntegerField(required=False)  # noqa: N815 - the wire's field name


def _failure(code: str, message: str, http_status: int, **extra: Any) -> Response:
    return Response({"code": code, "message": message, **extra}, status=http_status)


class CandlesView(APIView):
    """Candles of a symbol (all venues merged, or some), oldest first; buckets
    without trades are omitted."""

    api_key_scope = "market:read"

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "symbol",
                OpenApiTypes.STR,
                required=True,
                pattern=SYMBOL_RE.pattern,
                description="BASE-QUOTE, e.g. BTC-USD.",
            ),
            OpenApiParameter("resolution", OpenApiTypes.STR, required=True, enum=list(RESOLUTIONS)),
            OpenApiParameter(
                "venues",
                {"type": "string", "pattern": VENUES_PATTERN},
                description="Comma-separated venue codes (default: all).",
            ),
            OpenApiParameter("from", EPOCH_MS, description="Window start, epoch ms (inclusive); with to."),
            OpenApiParameter("to", EPOCH_MS, description="Window end, epoch ms (exclusive); with from."),
        ],
        responses={
            200: MarketDataResponse,
            400: OpenApiResponse(CandleFailure, description=f"Invalid, or more than {MAX_CANDLES} candles."),
            404: OpenApiResponse(CandleFailure, description="Unknown symbol or venue."),
        },
    )
    def get(self, request: Request) -> Response:
        query = CandleQuery(data=request.query_params.dict())
        if not query.is_valid():
            return _failure("VALIDATION_FAILED", "invalid candle request", 400, errors=query.errors)
        params = query.validated_data
        window = {"from": params["from"], "to": params["to"]} if "from" in params else None
        try:
            series = services.fetch_candles(
                params["symbol"], params["resolution"], venues=params.get("venues"), window=window
            )
        except (services.UnknownSymbol, services.UnknownVenue) as exc:
            return _failure("NOT_FOUND", str(exc), status.HTTP_404_NOT_FOUND)
        except services.WindowError as exc:
            return _failure("VALIDATION_FAILED", str(exc), 400, errors=exc.errors)
        except services.TooManyCandles as exc:
            return _failure("VALIDATION_FAILED", str(exc), 400, maxCandles=exc.max_candles)
        return Response(
            {
                "symbol": series.symbol,
                "resolution": series.resolution,
                "candles": [candle.to_wire() for candle in series.candles],
            }
        )

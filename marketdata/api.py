"""REST ingestion for authenticated producers: ``POST /api/market/trades``.

Only staff and holders of the Django permission ``marketdata.add_trade`` may
ingest. A batch is all or nothing: one invalid trade (unknown venue or
symbol, bad number) rejects it with per-trade errors. Replays are harmless:
trades already stored count as duplicates. Send prices and sizes as decimal
strings to keep them exact; JSON numbers are read at their shortest
representation.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import authentication, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from marketdata import services
from marketdata.trades import TradeInput
from marketdata.windows import MAX_TIMESTAMP_MS
from realtime.payloads import Payload
from realtime.rest import BearerTokenAuthentication, StaffOrPermission

MAX_TRADES_PER_REQUEST = 10_000


class MayIngestTrades(StaffOrPermission):
    permission = "marketdata.add_trade"
    message = "only staff and holders of the permission marketdata.add_trade may ingest trades"


class TradeItem(Payload):
    """Documents one trade of the body (OpenAPI); ``parse_trades`` validates
    it, by hand, because DRF fields cost some 60 us per trade."""

    venue = serializers.CharField(max_length=32, help_text="Venue code, e.g. binance.")
    symbol = serializers.CharField(max_length=64, help_text="BASE-QUOTE, or the venue's native symbol.")
    id = serializers.CharField(max_length=64, help_text="The exchange's trade id (string or integer).")
    timestamp = serializers.IntegerField(min_value=0, max_value=MAX_TIMESTAMP_MS, help_text="Epoch milliseconds.")
    price = serializers.DecimalField(max_digits=None, decimal_places=None, help_text="Decimal string preferred.")
    size = serializers.DecimalField(max_digits=None, decimal_places=None, help_text="Base quantity.")
    side = serializers.ChoiceField(["buy", "sell"], help_text="Taker side.")


class IngestRequest(Payload):
    trades = TradeItem(many=True, allow_empty=False, max_length=MAX_TRADES_PER_REQUEST)


class IngestResponse(serializers.Serializer):
    received = serializers.IntegerField()
    inserted = serializers.IntegerField()
    duplicates = serializers.IntegerField()


_FIELDS = frozenset(TradeItem().fields)


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, str) and len(value) <= 100:
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest representation: what the producer most likely wrote
    return None


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def parse_trades(body: Any) -> tuple[list[TradeInput], dict[str, list[str]]]:
    """The trades of a request body, or per-field errors (``trades.3.price``).
    Numbers are only parsed here; ``ingest_trades`` checks what it stores."""
    if not isinstance(body, dict) or set(body) != {"trades"}:
        return [], {"trades": ["Expected {trades: [...]}, and nothing else."]}
    items = body["trades"]
    if not isinstance(items, list) or not 0 < len(items) <= MAX_TRADES_PER_REQUEST:
        return [], {"trades": [f"Expected a list of 1 to {MAX_TRADES_PER_REQUEST} trades."]}
    trades: list[TradeInput] = []
    errors: dict[str, list[str]] = {}
    for index, item in enumerate(items):
        if len(errors) >= 100:
            break
        if not isinstance(item, dict) or item.keys() != _FIELDS:
            known = set(item) if isinstance(item, dict) else set()
            for name in sorted(_FIELDS - known):
                errors[f"trades.{index}.{name}"] = ["This field is required."]
            for name in sorted(map(str, known - _FIELDS))[:10]:
                errors[f"trades.{index}.{name[:40]}"] = ["Unknown field."]
            if not isinstance(item, dict):
                errors[f"trades.{index}"] = ["Expected an object."]
            continue
        venue, symbol, trade_id = _text(item["venue"], 32), _text(item["symbol"], 64), _text(item["id"], 64)
        ts, price, size, side = item["timestamp"], _decimal(item["price"]), _decimal(item["size"]), item["side"]
        problems = {
            "venue": venue is None,
            "symbol": symbol is None,
            "id": trade_id is None,
            "timestamp": isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= MAX_TIMESTAMP_MS,
            "price": price is None,
            "size": size is None,
            "side": side not in ("buy", "sell"),
        }
        if any(problems.values()):
            for name, bad in problems.items():
                if bad:
                    errors[f"trades.{index}.{name}"] = [_MESSAGES[name]]
            continue
        assert venue is not None and symbol is not None and trade_id is not None
        assert price is not None and size is not None
        trades.append(TradeInput(venue, symbol, trade_id, ts, price, size, side))
    return trades, errors


_MESSAGES = {
    "venue": "Expected a venue code (at most 32 characters).",
    "symbol": "Expected a symbol (at most 64 characters).",
    "id": "Expected a string or integer id (at most 64 characters).",
    "timestamp": f"Expected epoch milliseconds, 0..{MAX_TIMESTAMP_MS}.",
    "price": "Expected a decimal number (a string keeps it exact).",
    "size": "Expected a decimal number (a string keeps it exact).",
    "side": "Expected buy or sell.",
}


def _invalid(message: str, errors: Any) -> Response:
    return Response(
        {"code": "VALIDATION_FAILED", "message": message, "errors": errors}, status=status.HTTP_400_BAD_REQUEST
    )


class TradeIngestView(APIView):
    """Store a batch of trades (idempotent) and update the candles."""

    authentication_classes = [BearerTokenAuthentication, authentication.SessionAuthentication]
    permission_classes = [permissions.IsAuthenticated, MayIngestTrades]

    @extend_schema(request=IngestRequest, responses={200: IngestResponse})
    def post(self, request: Request) -> Response:
        trades, errors = parse_trades(request.data)
        if errors:
            return _invalid("invalid trade batch; nothing was stored", errors)
        try:
            result = services.ingest_trades(trades)
        except services.InvalidTrades as exc:
            return _invalid(str(exc), {f"trades.{key}": messages for key, messages in exc.errors.items()})
        return Response({"received": result.received, "inserted": result.inserted, "duplicates": result.duplicates})

"""Typed frames and payloads of the main events (docs/PROTOCOL.md; every
payload's schema is in /api/asyncapi.json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict


@dataclass(frozen=True)
class Event:
    """One server frame: ``name`` and ``data``; ``id`` on replies to a request;
    ``room``/``offset``/``epoch`` on room events and on the answers that join a room."""

    name: str
    data: dict[str, Any]
    id: str | int | None = None
    room: str | None = None
    offset: int | None = None
    epoch: str | None = None
    recovered: bool | None = None

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Event:
        data = frame.get("data")
        offset = frame.get("offset")
        recovered = frame.get("recovered")
        return cls(
            name=str(frame.get("event")),
            data=data if isinstance(data, dict) else {},
            id=frame.get("id"),
            room=frame.get("room"),
            offset=offset if isinstance(offset, int) else None,
            epoch=frame.get("epoch"),
            recovered=recovered if isinstance(recovered, bool) else None,
        )


class Connected(TypedDict):
    userId: str
    sid: str
    timestamp: int
    applicationId: str


class CreditBalanceUpdated(TypedDict):
    newBalance: int
    lifetimeEarned: int
    lifetimeSpent: int
    applicationId: str
    sequence: int


class CreditsMoved(TypedDict):
    """``credits_deducted`` (with ``action``) and ``credits_granted`` (with ``reason``)."""

    amount: int
    newBalance: int
    transactionId: str
    timestamp: int
    applicationId: str
    sequence: int
    action: NotRequired[str]
    reason: NotRequired[str]


class Candle(TypedDict):
    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int


class MarketDataResponse(TypedDict):
    symbol: str
    resolution: str
    pricePrecision: int
    candles: list[Candle]


class MarketChartLiveUpdate(Candle):
    symbol: str
    resolution: str


class Column(TypedDict):
    name: str
    type: str


class QueryStarted(TypedDict):
    queryId: str
    estimatedMs: int


class QueryProgress(TypedDict):
    queryId: str
    rowsProcessed: int
    pct: float | None


class QueryResponse(TypedDict):
    queryId: str
    rows: list[list[Any]]
    schema: list[Column]


class QueryCompleted(TypedDict):
    queryId: str
    durationMs: int
    totalRows: int
    truncated: bool


class ChatMessage(TypedDict):
    conversationId: str
    messageId: str
    role: str
    delta: str
    isFinal: bool
    content: NotRequired[str]


class ChatResponse(TypedDict):
    conversationId: str
    messageId: str
    tokens: int
    sql: NotRequired[str]
    params: NotRequired[Any]
    queryId: NotRequired[str]


class AnalysisProgress(TypedDict):
    jobId: str
    stage: str
    pct: int


class AnalysisResponse(TypedDict):
    jobId: str
    chain: str
    address: str
    hops: int
    known: bool
    riskScore: int
    riskLevel: str
    clusters: list[Any]
    signals: list[dict[str, Any]]
    exposure: Any
    rules: Any
    truncated: bool
    stats: dict[str, Any]


class ApplicationBroadcast(TypedDict):
    applicationId: str
    message: str
    data: Any
    sentBy: str
    timestamp: int

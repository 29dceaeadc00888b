"""The asyncio client: one WebSocket to ``/ws``, requests matched to their
replies by id, pushed events in a queue, and automatic reconnection that
recovers missed room events (per room last offset and epoch)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection

from ledgercore_client.errors import ERROR_EVENTS, ConnectionLost, LedgerCoreError, Unauthorized, error_from_frame
from ledgercore_client.events import (
    AnalysisResponse,
    CreditBalanceUpdated,
    Event,
    MarketDataResponse,
)

CREDIT_EVENTS = frozenset({"credit_balance_updated", "credits_deducted", "credits_granted"})
# Answers that carry a room's position at the moment it was (re)joined.
JOIN_ANSWERS = frozenset({"connected", "subscribed", "room_resync"})


def websocket_url(url: str) -> str:
    """``http(s)://host:port`` or ``ws(s)://host:port[/ws]`` -> the ``/ws`` endpoint."""
    url = url.rstrip("/")
    if url.startswith(("http://", "https://")):
        url = "ws" + url[4:]
    if not url.endswith("/ws"):
        url += "/ws"
    return url


class AsyncClient:
    """``async with AsyncClient(url, token) as client: await client.ping()``.

    With ``reconnect`` (default) a lost connection is reopened with backoff;
    the personal room is recovered with ``sinceOffset``/``sinceEpoch`` and
    every subscribed room is joined again with ``since``, so the events
    published meanwhile arrive, in order and once. Requests in flight when
    the connection drops raise :class:`ConnectionLost`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        application_id: str | None = None,
        reconnect: bool = True,
        max_backoff: float = 10.0,
        open_timeout: float = 20.0,
    ) -> None:
        self.url = websocket_url(url)
        self.token = token
        self.application_id = application_id
        self.reconnect = reconnect
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.user_id: str | None = None
        self.balance: CreditBalanceUpdated | None = None
        self.reconnects = 0
        self.positions: dict[str, tuple[str, int]] = {}
        self.rooms: set[str] = set()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Queue[Event | BaseException]] = {}
        self._events: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._online = asyncio.Event()
        self._allowed = asyncio.Event()
        self._allowed.set()
        self._balance_seen = asyncio.Event()
        self._credit_sequence: dict[str, int] = {}
        self._closing = False

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connection -----------------------------------------------------

    async def connect(self) -> None:
        await self._open()
        self._reader = asyncio.create_task(self._read_loop())

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._fail_pending(ConnectionLost("CONNECTION_LOST", "client closed"))

    @contextlib.asynccontextmanager
    async def offline(self) -> AsyncIterator[None]:
        """Close the socket as a network failure would and stay disconnected
        for the block; on leaving it, reconnect and recover what was missed."""
        self._allowed.clear()
        self._online.clear()
        if self._ws is not None:
            await self._ws.close()
        try:
            yield
        finally:
            self._allowed.set()
        await asyncio.wait_for(self._online.wait(), self.open_timeout * 3)

    async def _open(self) -> None:
        query = {"token": self.token}
        if self.application_id:
            query["applicationId"] = self.application_id
        if self.user_id and (position := self.positions.get(f"user:{self.user_id}")):
            query["sinceEpoch"], query["sinceOffset"] = position[0], str(position[1])
        ws = await websockets.connect(f"{self.url}?{urlencode(query)}", max_size=None, open_timeout=self.open_timeout)
        first = Event.from_frame(json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout)))
        if first.name != "connected":
            await ws.close()
            raise error_from_frame(first.name, first.data)
        self._ws = ws
        self.user_id = str(first.data.get("userId"))
        self.application_id = str(first.data.get("applicationId"))
        self._track_position(first)
        for room in sorted(self.rooms):
            data: dict[str, Any] = {"room": room}
            if position := self.positions.get(room):
                data["since"] = {"epoch": position[0], "offset": position[1]}
            await ws.send(json.dumps({"event": "subscribe", "data": data, "id": f"resubscribe:{room}"}))
        self._online.set()

    async def _read_loop(self) -> None:
        attempt = 0
        while True:
            ws = self._ws
            assert ws is not None
            try:
                async for raw in ws:
                    self._dispatch(raw)
            except websockets.ConnectionClosed:
                pass
            self._online.clear()
            self._fail_pending(ConnectionLost("CONNECTION_LOST", "the connection closed"))
            if self._closing or not self.reconnect or (ws.close_code == 4401):
                self._events.put_nowait(ConnectionLost("CONNECTION_LOST", f"closed ({ws.close_code})"))
                return
            while True:
                await self._allowed.wait()
                delay = min(self.max_backoff, 0.2 * 2**attempt) * random.uniform(0.5, 1.0)
                attempt += 1
                await asyncio.sleep(delay if attempt > 1 else 0.05)
                if not self._allowed.is_set():
                    continue
                try:
                    await self._open()
                except Unauthorized as exc:
                    self._events.put_nowait(exc)
                    return
                except (OSError, TimeoutError, LedgerCoreError, websockets.WebSocketException):
                    continue
                self.reconnects += 1
                attempt = 0
                break

    def _track_position(self, event: Event) -> bool:
        """Record the room position; False for a room event already seen."""
        if event.room is None or event.epoch is None or event.offset is None:
            return True
        if event.name in JOIN_ANSWERS:
            # A recovering answer carries the last replayed offset: the replay
            # that follows moves the position, not the answer.
            if event.recovered is not True or event.room not in self.positions:
                self.positions[event.room] = (event.epoch, event.offset)
            return True
        known = self.positions.get(event.room)
        if known and known[0] == event.epoch and event.offset <= known[1]:
            return False
        self.positions[event.room] = (event.epoch, event.offset)
        return True

    def _dispatch(self, raw: str | bytes) -> None:
        frame = json.loads(raw)
        if not isinstance(frame, dict):
            return
        event = Event.from_frame(frame)
        if not self._track_position(event):
            return
        if event.name in CREDIT_EVENTS and isinstance(seq := event.data.get("sequence"), int):
            app = str(event.data.get("applicationId"))
            if seq < self._credit_sequence.get(app, -1):
                return
            self._credit_sequence[app] = seq
            if event.name == "credit_balance_updated" and app == self.application_id:
                self.balance = cast(CreditBalanceUpdated, event.data)
                self._balance_seen.set()
        queue = self._pending.get(str(event.id)) if event.id is not None else None
        (queue or self._events).put_nowait(event)

    def _fail_pending(self, error: BaseException) -> None:
        for queue in self._pending.values():
            queue.put_nowait(error)

    # -- requests -------------------------------------------------------

    async def send(self, event: str, data: dict[str, Any] | None = None, request_id: str | None = None) -> None:
        if self._closing:
            raise ConnectionLost("CONNECTION_LOST", "the client is closed")
        await asyncio.wait_for(self._online.wait(), self.open_timeout * 3)
        assert self._ws is not None
        frame: dict[str, Any] = {"event": event, "data": data or {}}
        if request_id is not None:
            frame["id"] = request_id
        await self._ws.send(json.dumps(frame))

    async def request(
        self, event: str, data: dict[str, Any] | None, until: Iterable[str], timeout: float | None = 60.0
    ) -> AsyncIterator[Event]:
        """Send a request and yield every reply carrying its id up to one of
        ``until``; an error reply raises :class:`LedgerCoreError`."""
        final = set(until)
        rid = f"r{next(self._ids)}"
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._pending[rid] = queue
        try:
            await self.send(event, data, rid)
            while True:
                item = await asyncio.wait_for(queue.get(), timeout)
                if isinstance(item, BaseException):
                    raise item
                if item.name in ERROR_EVENTS:
                    raise error_from_frame(item.name, item.data)
                yield item
                if item.name in final:
                    return
        finally:
            self._pending.pop(rid, None)

    async def call(self, event: str, data: dict[str, Any] | None, reply: str, timeout: float | None = 60.0) -> Event:
        """One request, its final reply."""
        last: Event | None = None
        async for last in self.request(event, data, (reply,), timeout):  # noqa: B007 - keeps the last
            pass
        assert last is not None
        return last

    async def events(self, timeout: float | None = None) -> AsyncIterator[Event]:
        """Pushed events (room events, the balance, answers to resubscriptions)."""
        while True:
            item = await asyncio.wait_for(self._events.get(), timeout)
            if isinstance(item, BaseException):
                raise item
            yield item

    async def next_event(self, *names: str, timeout: float = 30.0) -> Event:
        """The next pushed event named one of ``names`` (any when none); others are skipped."""
        async with asyncio.timeout(timeout):
            async for event in self.events():
                if not names or event.name in names:
                    return event
        raise AssertionError("unreachable")

    # -- the protocol's requests ---------------------------------------

    async def ping(self) -> int:
        return int((await self.call("ping", None, "pong")).data["timestamp"])

    async def subscribe(self, room: str) -> Event:
        data: dict[str, Any] = {"room": room}
        if position := self.positions.get(room):
            data["since"] = {"epoch": position[0], "offset": position[1]}
        answer = await self.call("subscribe", data, "subscribed")
        self.rooms.add(room)
        return answer

    async def unsubscribe(self, room: str) -> None:
        await self.call("unsubscribe", {"room": room}, "unsubscribed")
        self.rooms.discard(room)
        self.positions.pop(room, None)

    async def candles(
        self,
        symbol: str,
        resolution: str = "1m",
        *,
        start: int | None = None,
        end: int | None = None,
        window: str | None = None,
        venues: list[str] | None = None,
    ) -> MarketDataResponse:
        """``request_market_data``: ``start``/``end`` epoch ms, or ``window`` ("24h"), else the last 500 buckets."""
        data: dict[str, Any] = {"symbol": symbol, "resolution": resolution}
        if start is not None or end is not None:
            data["window"] = {"from": start or 0, "to": end if end is not None else 2**53}
        elif window:
            data["window"] = window
        if venues:
            data["venues"] = venues
        return cast(MarketDataResponse, (await self.call("request_market_data", data, "market_data_response")).data)

    def query(
        self, sql: str, params: list[Any] | dict[str, Any] | None = None, timeout: float | None = 120.0
    ) -> AsyncIterator[Event]:
        """Every event of a query: query_started, query_progress, query_response chunks, query_completed."""
        data: dict[str, Any] = {"sql": sql}
        if params is not None:
            data["params"] = params
        return self.request("query", data, ("query_completed",), timeout)

    async def query_rows(
        self, sql: str, params: list[Any] | dict[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The query's rows as dicts (column name -> value), as they stream in."""
        async for event in self.query(sql, params):
            if event.name == "query_response":
                names = [column["name"] for column in event.data["schema"]]
                for row in event.data["rows"]:
                    yield dict(zip(names, row, strict=True))

    def chat_events(
        self, message: str, conversation_id: str | None = None, context: dict[str, str] | None = None
    ) -> AsyncIterator[Event]:
        data: dict[str, Any] = {"message": message}
        if conversation_id:
            data["conversationId"] = conversation_id
        if context:
            data["context"] = context
        return self.request("chat", data, ("chat_response",), 120.0)

    async def chat(
        self, message: str, conversation_id: str | None = None, context: dict[str, str] | None = None
    ) -> AsyncIterator[str]:
        """The answer's deltas as they are produced."""
        async for event in self.chat_events(message, conversation_id, context):
            if event.name == "chat_message" and event.data.get("delta"):
                yield str(event.data["delta"])

    def analyse(self, address: str, chain: str = "ethereum", hops: int | None = None) -> AsyncIterator[Event]:
        """address_analysis_started, _progress (stage, pct), _response, _completed."""
        data: dict[str, Any] = {"chain": chain, "address": address}
        if hops is not None:
            data["hops"] = hops
        return self.request("address_analysis", data, ("address_analysis_completed",), 300.0)

    async def analysis(self, address: str, chain: str = "ethereum", hops: int | None = None) -> AnalysisResponse:
        result: dict[str, Any] = {}
        async for event in self.analyse(address, chain, hops):
            if event.name == "address_analysis_response":
                result = event.data
        return cast(AnalysisResponse, result)

    async def get_balance(self, timeout: float = 30.0) -> CreditBalanceUpdated:
        """The bound application's balance (sent after connect, kept up to date)."""
        await asyncio.wait_for(self._balance_seen.wait(), timeout)
        assert self.balance is not None
        return self.balance

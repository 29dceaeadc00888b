"""A blocking client: the asyncio client run on an event loop of its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from ledgercore_client.client import AsyncClient
from ledgercore_client.events import CreditBalanceUpdated, Event, MarketDataResponse

T = TypeVar("T")


class Client:
    """``with Client(url, token) as client: client.ping()``; the same methods
    as :class:`AsyncClient`, blocking, and iterators instead of async iterators."""

    def __init__(self, url: str, token: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ledgercore-client", daemon=True)
        self._thread.start()
        self.aio = self._run(self._make(url, token, options))

    @staticmethod
    async def _make(url: str, token: str, options: dict[str, Any]) -> AsyncClient:
        return AsyncClient(url, token, **options)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self._run(_anext(iterator))
            except StopAsyncIteration:
                return

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        self._run(self.aio.connect())

    def close(self) -> None:
        try:
            self._run(self.aio.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def ping(self) -> int:
        return self._run(self.aio.ping())

    def subscribe(self, room: str) -> Event:
        return self._run(self.aio.subscribe(room))

    def unsubscribe(self, room: str) -> None:
        self._run(self.aio.unsubscribe(room))

    def candles(self, symbol: str, resolution: str = "1m", **options: Any) -> MarketDataResponse:
        return self._run(self.aio.candles(symbol, resolution, **options))

    def query(self, sql: str, params: Any = None) -> Iterator[Event]:
        return self._iterate(self.aio.query(sql, params))

    def query_rows(self, sql: str, params: Any = None) -> Iterator[dict[str, Any]]:
        return self._iterate(self.aio.query_rows(sql, params))

    def chat(self, message: str, conversation_id: str | None = None) -> Iterator[str]:
        return self._iterate(self.aio.chat(message, conversation_id))

    def analyse(self, address: str, chain: str = "ethereum", hops: int | None = None) -> Iterator[Event]:
        return self._iterate(self.aio.analyse(address, chain, hops))

    def get_balance(self, timeout: float = 30.0) -> CreditBalanceUpdated:
        return self._run(self.aio.get_balance(timeout))

    def next_event(self, *names: str, timeout: float = 30.0) -> Event:
        return self._run(self.aio.next_event(*names, timeout=timeout))


async def _anext[T](iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()

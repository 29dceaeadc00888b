"""A connection's inbound queues at a fraction of ``asyncio.Queue``'s memory.

Every WebSocket connection has two queues that are empty nearly all the
time: daphne's input queue (the frames and the disconnect the ASGI
application receives) and its channel's mailbox in the channel layer. An
``asyncio.Queue`` costs about 3.5 KiB even when empty: three deques (the
items, the getters, the putters), its ``join()`` event with a fourth deque,
and two instance dictionaries. With 10,000 idle sockets that is 70 MB for
queues with nothing in them.

``Mailbox`` has the part of ``asyncio.Queue``'s interface those callers use
(``put_nowait``, ``get``, ``get_nowait``, ``empty``, ``full``, ``qsize``,
``maxsize``) with the same ordering and the same handling of a cancelled
``get`` (an item a cancelled getter was woken for goes to the next getter),
and allocates its storage only while something is in it. It has no
``put``, ``join`` or ``task_done``: its callers never wait to put (a full
mailbox raises ``asyncio.QueueFull``, or with ``drop_oldest`` drops its
oldest item as channels-redis's ``BoundedQueue`` does) and never join.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

# Items are kept in a list while they are few (a list of one is ~60 bytes, a
# deque ~760), in a deque past this many (a list's pop(0) is linear).
LIST_LIMIT = 32


class Mailbox:
    __slots__ = ("_drop_oldest", "_getters", "_items", "maxsize")

    def __init__(self, maxsize: int = 0, *, drop_oldest: bool = False) -> None:
        self.maxsize = maxsize
        self._drop_oldest = drop_oldest
        self._items: list[Any] | deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None

    def __repr__(self) -> str:
        return f"<Mailbox maxsize={self.maxsize} items={self.qsize()} getters={len(self._getters or ())}>"

    def qsize(self) -> int:
        return len(self._items) if self._items is not None else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= self.qsize()

    @property
    def _queue(self) -> list[Any] | deque[Any]:
        """The items, oldest first, read-only (channels' in-memory layer
        reads ``asyncio.Queue._queue[0]`` to expire old messages)."""
        return self._items if self._items is not None else []

    def put_nowait(self, item: Any) -> None:
        if self.full():
            if not self._drop_oldest:
                raise asyncio.QueueFull
            self._pop()
        items = self._items
        if items is None:
            self._items = [item]
        else:
            items.append(item)
            if len(items) > LIST_LIMIT and isinstance(items, list):
                self._items = deque(items)
        self._wake_next()

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._pop()

    async def get(self) -> Any:
        while not self._items:
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = [getter]
            else:
                self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()  # in case it was not done yet
                if self._getters is not None and getter in self._getters:
                    self._getters.remove(getter)
                if self._items and not getter.cancelled():
                    # Woken for an item it will not take: the next getter takes it.
                    self._wake_next()
                raise
        return self._pop()

    def _pop(self) -> Any:
        items = self._items
        assert items
        item = items.popleft() if isinstance(items, deque) else items.pop(0)
        if not items:
            self._items = None
        return item

    def _wake_next(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break
        if not getters:
            self._getters = None

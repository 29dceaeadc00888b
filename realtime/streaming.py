"""Streamed HTTP bodies built from synchronous iterators (a queryset read
with ``.iterator()``), served under ASGI without being read into memory.

Django serves a ``StreamingHttpResponse`` over a synchronous iterator under
ASGI by first reading all of it into a list. ``stream_batches`` turns such an
iterator into an asynchronous one that takes ``batch`` pieces at a time on the
request's database thread (``thread_sensitive``: the same connection, so a
PostgreSQL server-side cursor stays open between batches), and closes the
iterator (and its cursor) when the client goes away.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async

DEFAULT_BATCH = 500


async def stream_batches(pieces: Iterator[str], batch: int = DEFAULT_BATCH) -> AsyncIterator[str]:
    """The pieces, joined ``batch`` at a time, read on the database thread."""

    def take() -> str:
        return "".join(itertools.islice(pieces, batch))

    def close() -> None:
        closer = getattr(pieces, "close", None)
        if closer is not None:
            closer()

    read = sync_to_async(take, thread_sensitive=True)
    try:
        while piece := await read():
            yield piece
    finally:
        await sync_to_async(close, thread_sensitive=True)()

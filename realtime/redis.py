"""One asyncio Redis client per event loop (Redis stack only)."""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as aioredis
from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def client() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    existing = _clients.get(loop)
    if existing is None:
        # A bounded pool that makes callers wait for a free connection
        # instead of failing when many connections throttle at once.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=settings.LEDGERCORE_REDIS_MAX_CONNECTIONS,
            timeout=10,
            socket_timeout=10,
            decode_responses=True,
        )
        existing = aioredis.Redis(connection_pool=pool)
        _clients[loop] = existing
    return existing


def key(*parts: str) -> str:
    return ":".join((settings.LEDGERCORE_REDIS_PREFIX, *parts))

"""Redis access for presence and throttles (Redis stack only).

One client per event loop. Callers queue on a FIFO semaphore sized to the
connection pool, so that under load requests are served in arrival order
(the pool's own wait lets newcomers overtake waiters, which starved some
connections for seconds), and Lua scripts run by SHA (EVALSHA) after their
first use.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from redis.commands.core import AsyncScript


@dataclass
class _LoopState:
    client: aioredis.Redis
    slots: asyncio.Semaphore
    scripts: dict[str, AsyncScript] = field(default_factory=dict)


_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def _state() -> _LoopState:
    loop = asyncio.get_running_loop()
    state = _states.get(loop)
    if state is None:
        size = settings.LEDGERCORE_REDIS_MAX_CONNECTIONS
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=size, timeout=10, socket_timeout=10, decode_responses=True
        )
        state = _LoopState(aioredis.Redis(connection_pool=pool), asyncio.Semaphore(size))
        _states[loop] = state
    return state


async def run_script(source: str, keys: list[str], args: list[Any]) -> Any:
    state = _state()
    script = state.scripts.get(source)
    if script is None:
        script = state.scripts[source] = state.client.register_script(source)
    async with state.slots:
        return await script(keys=keys, args=args)


async def command(name: str, *args: Any) -> Any:
    state = _state()
    async with state.slots:
        return await state.client.execute_command(name, *args)


def key(*parts: str) -> str:
    return ":".join((settings.LEDGERCORE_REDIS_PREFIX, *parts))

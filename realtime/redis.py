"""Redis access for presence and throttles (Redis stack only).

One client per event loop. Callers queue on a FIFO semaphore sized to the
connection pool, so that under load requests are served in arrival order
(the pool's own wait lets newcomers overtake waiters, which starved some
connections for seconds), and Lua scripts run by SHA (EVALSHA) after their
first use. Script calls are pipelined: those made in the same turn of the
event loop, or while the pipeline before them is on its way, go together
(``run_script``).

Redis is reached directly (``REDIS_URL``) or through Sentinel
(``LEDGERCORE_REDIS_SENTINELS``), which names the current primary on every
new connection, so a failover is seen as a short outage.

Outages: a command that fails on a connection error, a timeout or a replica
that became read-only raises ``RedisUnavailable`` (wire code
``UNAVAILABLE`` with ``retryAfter``). After a failure the breaker is open:
for a backoff that doubles up to ``LEDGERCORE_REDIS_RETRY_MAX_SECONDS``,
commands fail at once without waiting on a dead server; then one attempt
goes through. When a command succeeds again, ``generation()`` increases, so
that presence (which owns state Redis may have lost) can rebuild it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from realtime.config import redis_url_credentials
from realtime.errors import Unavailable

log = logging.getLogger(__name__)

# What an outage, a failover or a restart looks like from a client: the
# connection is refused, reset or times out; the server is still loading
# its data; the node answered as a read-only replica (a demoted primary).
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.TryAgainError,
    OSError,
    asyncio.TimeoutError,
)


class RedisUnavailable(Unavailable):
    """Redis does not answer: the request was not run and not charged."""

    def __init__(self, retry_after: float = 1.0) -> None:
        super().__init__("Redis does not answer; retry later", retry_after=max(1, math.ceil(retry_after)))


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, (*REDIS_ERRORS, RedisUnavailable))


# A script call waiting for the next pipeline: the script, its keys and
# arguments, and its caller's future.
_Queued = tuple[AsyncScript, list[str], list[Any], "asyncio.Future[Any]"]
# Script calls sent in one pipeline at most.
PIPELINE_MOST = 256


@dataclass
class _LoopState:
    client: aioredis.Redis
    slots: asyncio.Semaphore
    scripts: dict[str, AsyncScript] = field(default_factory=dict)
    queued: list[_Queued] = field(default_factory=list)
    sender: asyncio.Task[None] | None = None
    # Pipelines sent, and the script calls they carried.
    pipelines: int = 0
    pipelined: int = 0


class _Health:
    """Process-wide view of Redis: a breaker shared by every loop."""

    def __init__(self) -> None:
        self.failures = 0
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.generation = 0

    def check(self) -> None:
        """Raise at once while the breaker is open."""
        if self.down_since is not None:
            wait = self.retry_at - time.monotonic()
            if wait > 0:
                raise RedisUnavailable(wait)

    def failed(self, exc: BaseException) -> RedisUnavailable:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning("Redis does not answer (%s: %s); retrying with backoff", type(exc).__name__, exc)
        self.failures += 1
        cap = settings.LEDGERCORE_REDIS_RETRY_MAX_SECONDS
        backoff = min(cap, 0.05 * 2 ** min(self.failures, 16))
        self.retry_at = now + backoff
        return RedisUnavailable(backoff)

    def succeeded(self) -> None:
        if self.down_since is not None:
            log.warning("Redis answers again after %.1f s", time.monotonic() - self.down_since)
            self.down_since = None
            self.failures = 0
            self.generation += 1
            # A copy: a listener may register another one while they run.
            for listener in _recovery_listeners.copy():
                try:
                    listener()
                except Exception:
                    log.exception("a Redis recovery listener failed")

    @property
    def down(self) -> bool:
        return self.down_since is not None


_recovery_listeners: list[Callable[[], None]] = []


def on_recovery(listener: Callable[[], None]) -> None:
    """Call ``listener`` (on the loop that saw it) each time Redis answers
    again after failing: the channel layer reconnects at once instead of at
    the end of its backoff."""
    _recovery_listeners.append(listener)


_health = _Health()
_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def generation() -> int:
    """Increases each time Redis answers again after failing."""
    return _health.generation


def is_down() -> bool:
    return _health.down


def _client(size: int) -> aioredis.Redis:
    timeout = settings.LEDGERCORE_REDIS_TIMEOUT_SECONDS
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
        "health_check_interval": 30,
        # One immediate retry on a connection error: after Redis restarts,
        # each pooled connection fails once on first use (its socket is
        # dead) although Redis answers.
        "retry": Retry(NoBackoff(), 1),
    }
    if settings.LEDGERCORE_REDIS_SENTINELS:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            settings.LEDGERCORE_REDIS_SENTINELS,
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
            **redis_url_credentials(settings.REDIS_URL),
        )
        client: aioredis.Redis = sentinel.master_for(
            settings.LEDGERCORE_REDIS_SENTINEL_MASTER, max_connections=size, **options
        )
        return client
    pool = aioredis.BlockingConnectionPool.from_url(settings.REDIS_URL, max_connections=size, timeout=10, **options)
    return aioredis.Redis(connection_pool=pool)


def _state() -> _LoopState:
    loop = asyncio.get_running_loop()
    state = _states.get(loop)
    if state is None:
        size = settings.LEDGERCORE_REDIS_MAX_CONNECTIONS
        state = _LoopState(_client(size), asyncio.Semaphore(size))
        _states[loop] = state
    return state


async def _call(state: _LoopState, make: Any) -> Any:
    _health.check()
    try:
        async with state.slots:
            # A waiter that queued before the outage fails fast too.
            _health.check()
            result = await make()
    except REDIS_ERRORS as exc:
        raise _health.failed(exc) from exc
    _health.succeeded()
    return result


async def run_script(source: str, keys: list[str], args: list[Any]) -> Any:
    """Run a Lua script. The script calls made in the same turn of the event
    loop, or while the pipeline before them is on its way, go to Redis
    together in one pipeline: one round trip and one pooled connection for
    a storm's worth of calls (thousands of clients connecting at once, each
    joining its room and reading its history). Each caller gets its own
    reply or its own error; an outage fails every call of its pipeline."""
    _health.check()
    state = _state()
    script = state.scripts.get(source)
    if script is None:
        script = state.scripts[source] = state.client.register_script(source)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    state.queued.append((script, keys, args, future))
    if state.sender is None or state.sender.done():
        # Starts on the loop's next turn: this turn's calls join it.
        state.sender = loop.create_task(_send_queued(state))
    return await future


async def _send_queued(state: _LoopState) -> None:
    while state.queued:
        batch = [item for item in state.queued[:PIPELINE_MOST] if not item[3].done()]
        del state.queued[:PIPELINE_MOST]
        if batch:
            try:
                await _send_pipeline(state, batch)
            except Exception as exc:  # no caller is left waiting
                log.exception("a pipeline of Redis scripts failed unexpectedly")
                _settle(batch, exc)
            except asyncio.CancelledError:
                # The loop is shutting down: whoever still waits is told.
                for _, _, _, future in (*batch, *state.queued):
                    future.cancel()
                state.queued.clear()
                raise


async def _send_pipeline(state: _LoopState, batch: list[_Queued]) -> None:
    try:
        async with state.slots:
            # Calls queued before an outage began fail fast too.
            _health.check()
            replies = await _pipeline(state, batch)
    except RedisUnavailable as exc:
        _settle(batch, exc)
        return
    except REDIS_ERRORS as exc:
        unavailable = _health.failed(exc)
        unavailable.__cause__ = exc
        _settle(batch, unavailable)
        return
    except Exception as exc:  # noqa: BLE001 - the pipeline failed as a whole: each of its callers is told
        _settle(batch, exc)
        return
    outage = next((reply for reply in replies if isinstance(reply, REDIS_ERRORS)), None)
    if outage is not None:
        unavailable = _health.failed(outage)
        unavailable.__cause__ = outage
        replies = [unavailable if isinstance(reply, REDIS_ERRORS) else reply for reply in replies]
    else:
        _health.succeeded()
    for (_, _, _, future), reply in zip(batch, replies, strict=True):
        if future.done():
            continue  # its caller is gone
        if isinstance(reply, BaseException):
            future.set_exception(reply)
        else:
            future.set_result(reply)


async def _pipeline(state: _LoopState, batch: list[_Queued]) -> list[Any]:
    """The replies of one pipeline of EVALSHAs, in order, each a value or
    the exception of that call; a script Redis does not hold (a restart,
    ``SCRIPT FLUSH``) is loaded and its calls made again on their own."""
    pipe = state.client.pipeline(transaction=False)
    for script, keys, args, _ in batch:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    replies = list(await pipe.execute(raise_on_error=False))
    state.pipelines += 1
    state.pipelined += len(batch)
    for index, reply in enumerate(replies):
        if isinstance(reply, redis_errors.NoScriptError):
            script, keys, args, _ = batch[index]
            try:
                replies[index] = await script(keys=keys, args=args)
            except redis_errors.RedisError as exc:
                replies[index] = exc
    return replies


def _settle(batch: list[_Queued], exc: BaseException) -> None:
    for _, _, _, future in batch:
        if not future.done():
            future.set_exception(exc)


def pipelining() -> tuple[int, int]:
    """(pipelines sent, script calls they carried) on this event loop."""
    state = _state()
    return state.pipelines, state.pipelined


async def command(name: str, *args: Any) -> Any:
    state = _state()
    return await _call(state, lambda: state.client.execute_command(name, *args))  # type: ignore[no-untyped-call]


def key(*parts: str) -> str:
    return ":".join((settings.LEDGERCORE_REDIS_PREFIX, *parts))

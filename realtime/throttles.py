"""Token-bucket throttles.

A bucket of capacity N refills N tokens per period (settings
LEDGERCORE_THROTTLE_RATES, e.g. ``user=60/s``). The per-connection bucket
lives with its connection; per-user buckets are shared by every connection
of the user: in process on the embedded stack, in Redis (one atomic script,
Redis's clock) on the scaled stack.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from django.conf import settings

from realtime import redis as lcredis
from realtime.config import parse_rate


def rate(throttle_class: str) -> tuple[int, float]:
    try:
        return parse_rate(settings.LEDGERCORE_THROTTLE_RATES[throttle_class])
    except KeyError:
        raise RuntimeError(f"throttle class {throttle_class!r} has no rate in LEDGERCORE_THROTTLE_RATES") from None


class TokenBucket:
    __slots__ = ("capacity", "per_second", "tokens", "updated")

    def __init__(self, capacity: int, period: float) -> None:
        self.capacity = float(capacity)
        self.per_second = capacity / period
        self.tokens = float(capacity)
        self.updated = time.monotonic()

    def take(self) -> float:
        """Take one token; 0.0 if allowed, else seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second


def retry_after_seconds(wait: float) -> int:
    """Whole seconds from now, rounded up, as PROTOCOL.md fixes."""
    return max(1, math.ceil(wait))


class MemoryUserBuckets:
    MAX_BUCKETS = 100_000

    def __init__(self) -> None:
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()

    async def take(self, throttle_class: str, user_id: str) -> float:
        key = (throttle_class, user_id)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(*rate(throttle_class))
            self._buckets[key] = bucket
            if len(self._buckets) > self.MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take()


_TAKE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local capacity = tonumber(ARGV[1])
local per_ms = capacity / tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * per_ms)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1000)
return wait
"""


class RedisUserBuckets:
    async def take(self, throttle_class: str, user_id: str) -> float:
        capacity, period = rate(throttle_class)
        wait_ms = await lcredis.run_script(
            _TAKE, [lcredis.key("throttle", throttle_class, user_id)], [capacity, int(period * 1000)]
        )
        return int(wait_ms) / 1000.0


_users: MemoryUserBuckets | RedisUserBuckets | None = None


def user_buckets() -> MemoryUserBuckets | RedisUserBuckets:
    global _users
    if _users is None:
        _users = RedisUserBuckets() if lcredis.enabled() else MemoryUserBuckets()
    return _users


def connection_bucket() -> TokenBucket:
    return TokenBucket(*rate("connection"))

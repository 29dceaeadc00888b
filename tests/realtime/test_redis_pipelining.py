"""realtime.redis.run_script: script calls made together go to Redis in one
pipeline, each caller with its own reply (a real Redis, scaled stack)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from realtime import redis as lcredis

pytestmark = pytest.mark.redis_stack

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
FAILS_ON_NEGATIVE = """
if tonumber(ARGV[1]) < 0 then
  return redis.error_reply('negative: ' .. ARGV[1])
end
return tonumber(ARGV[1]) * 2
"""
BUSY = """
local start = redis.call('TIME')
local now
repeat
  now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) >= tonumber(ARGV[1])
return 1
"""


def key(name: str) -> str:
    return lcredis.key("test-pipelining", name)


async def test_calls_made_together_go_in_one_pipeline_each_with_its_own_reply():
    before = lcredis.pipelining()
    replies = await asyncio.gather(*(lcredis.run_script(INCR, [key("counter")], [1]) for _ in range(50)))
    pipelines, calls = (after - first for after, first in zip(lcredis.pipelining(), before, strict=True))
    assert sorted(replies) == list(range(1, 51))
    assert (pipelines, calls) == (1, 50)


async def test_calls_made_while_a_pipeline_is_on_its_way_go_together_in_the_next():
    before = lcredis.pipelining()
    # A script that keeps Redis busy for 0.3 s: its pipeline is on its way meanwhile.
    first = asyncio.ensure_future(lcredis.run_script(BUSY, [key("busy")], [300_000]))
    await asyncio.sleep(0.1)
    later = [asyncio.ensure_future(lcredis.run_script(INCR, [key("waves")], [1])) for _ in range(20)]
    assert await first == 1
    assert sorted(await asyncio.gather(*later)) == list(range(1, 21))
    pipelines, calls = (after - then for after, then in zip(lcredis.pipelining(), before, strict=True))
    assert (pipelines, calls) == (2, 21)


async def test_one_calls_error_reaches_only_its_caller():
    replies = await asyncio.gather(
        *(lcredis.run_script(FAILS_ON_NEGATIVE, [key("unused")], [n]) for n in (1, -1, 3)), return_exceptions=True
    )
    assert replies[0] == 2 and replies[2] == 6
    assert isinstance(replies[1], Exception) and "negative: -1" in str(replies[1])


async def test_a_script_redis_does_not_hold_yet_is_loaded_and_run():
    # A script never sent before (its text is new): the pipeline's EVALSHA
    # finds no script, as after a restart, and each call is made again.
    fresh = f"-- {uuid.uuid4()}\n{INCR}"
    replies = await asyncio.gather(*(lcredis.run_script(fresh, [key("fresh")], [1]) for _ in range(5)))
    assert sorted(replies) == [1, 2, 3, 4, 5]
    assert await lcredis.run_script(fresh, [key("fresh")], [1]) == 6


async def test_a_caller_gone_away_leaves_the_others_their_replies():
    calls = [asyncio.ensure_future(lcredis.run_script(INCR, [key("gone")], [1])) for _ in range(3)]
    await asyncio.sleep(0)
    calls[1].cancel()
    done = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert sorted(reply for reply in done if isinstance(reply, int)) in ([1, 2], [2, 3], [1, 3])

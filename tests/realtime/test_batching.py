"""realtime.batching: calls to the ORM thread made together go in one call
of the batch function, each caller with its own answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from realtime.batching import Batched

# The hop is channels' database_sync_to_async, which looks at the ORM
# thread's database connection before and after each call.
pytestmark = pytest.mark.django_db


class Recorder:
    """A batch function: doubles each number, fails a negative one alone,
    and records each call's requests and thread."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[list[int]] = []
        self.threads: set[str] = set()
        self.entered = threading.Event()
        self.gate = gate

    def __call__(self, requests: Sequence[int]) -> list[int | Exception]:
        self.calls.append(list(requests))
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        return [ValueError(f"negative: {n}") if n < 0 else n * 2 for n in requests]


async def test_calls_made_together_go_in_one_call_each_with_its_own_answer():
    many = Recorder()
    batched: Batched[int, int] = Batched(many)
    results = await asyncio.gather(*(batched(n) for n in range(20)))
    assert results == [n * 2 for n in range(20)]
    assert many.calls == [list(range(20))]
    assert threading.current_thread().name not in many.threads


async def test_calls_made_while_a_call_runs_go_together_in_the_next_one():
    gate = threading.Event()
    many = Recorder(gate)
    batched: Batched[int, int] = Batched(many)
    first = asyncio.ensure_future(batched(1))
    assert await asyncio.to_thread(many.entered.wait, 10)
    later = [asyncio.ensure_future(batched(n)) for n in range(10, 20)]
    await asyncio.sleep(0.05)
    assert many.calls == [[1]]
    gate.set()
    assert await first == 2
    assert await asyncio.gather(*later) == [n * 2 for n in range(10, 20)]
    assert many.calls == [[1], list(range(10, 20))]


async def test_one_requests_exception_reaches_only_its_caller():
    batched: Batched[int, int] = Batched(Recorder())
    results = await asyncio.gather(batched(1), batched(-1), batched(3), return_exceptions=True)
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError) and str(results[1]) == "negative: -1"


async def test_a_failure_of_the_whole_call_reaches_each_of_its_callers_and_the_next_call_still_runs():
    calls: list[list[int]] = []

    def many(requests: Sequence[int]) -> list[int | Exception]:
        calls.append(list(requests))
        if len(calls) == 1:
            raise ConnectionError("the database does not answer")
        return list(requests)

    batched: Batched[int, int] = Batched(many)
    failed = await asyncio.gather(batched(1), batched(2), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in failed)
    assert await batched(3) == 3
    assert calls == [[1, 2], [3]]


async def test_a_caller_gone_away_leaves_the_others_their_answers():
    gate = threading.Event()
    many = Recorder(gate)
    batched: Batched[int, int] = Batched(many)
    first = asyncio.ensure_future(batched(1))
    assert await asyncio.to_thread(many.entered.wait, 10)
    gone = asyncio.ensure_future(batched(2))
    stays = asyncio.ensure_future(batched(3))
    await asyncio.sleep(0)
    gone.cancel()
    gate.set()
    assert await first == 2
    assert await stays == 6
    with pytest.raises(asyncio.CancelledError):
        await gone
    # The request of a caller gone before its call started is not made.
    assert many.calls == [[1], [3]]


async def test_more_requests_than_one_call_takes_are_answered_in_several():
    many = Recorder()
    batched: Batched[int, int] = Batched(many, most=5)
    assert await asyncio.gather(*(batched(n) for n in range(12))) == [n * 2 for n in range(12)]
    assert [len(call) for call in many.calls] == [5, 5, 2]


async def test_a_batch_function_answering_the_wrong_number_fails_its_callers_loudly():
    batched: Batched[int, int] = Batched(lambda requests: [1])
    results = await asyncio.gather(batched(1), batched(2), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) and "1 results for 2 requests" in str(result) for result in results)

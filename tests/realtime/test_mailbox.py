"""realtime.mailbox.Mailbox: asyncio.Queue's order and cancellation rules for
the calls its users make, in a fraction of its memory."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest

from realtime.mailbox import LIST_LIMIT, Mailbox


async def test_items_come_out_in_the_order_they_went_in_past_the_list_limit():
    box = Mailbox()
    items = list(range(LIST_LIMIT * 3))
    for item in items[: LIST_LIMIT * 2]:
        box.put_nowait(item)
    out = [box.get_nowait() for _ in range(LIST_LIMIT)]
    for item in items[LIST_LIMIT * 2 :]:
        box.put_nowait(item)
    assert box.qsize() == LIST_LIMIT * 2
    while not box.empty():
        out.append(await box.get())
    assert out == items
    assert box.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        box.get_nowait()


async def test_getters_wait_and_are_served_in_the_order_they_came():
    box = Mailbox()
    first = asyncio.create_task(box.get())
    second = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    assert not first.done() and not second.done()
    box.put_nowait("a")
    box.put_nowait("b")
    assert await first == "a"
    assert await second == "b"


async def test_an_item_a_cancelled_getter_was_woken_for_goes_to_the_next_getter():
    box = Mailbox()
    cancelled = asyncio.create_task(box.get())
    waiting = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    box.put_nowait("only")  # wakes ``cancelled``, which has not run yet
    cancelled.cancel()
    assert await asyncio.wait_for(waiting, 1) == "only"
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert box.empty()


async def test_a_getter_cancelled_while_waiting_leaves_no_trace():
    box = Mailbox()
    getter = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    box.put_nowait(1)
    assert await asyncio.wait_for(box.get(), 1) == 1


async def test_a_full_mailbox_refuses_or_drops_its_oldest():
    bounded = Mailbox(2)
    bounded.put_nowait(1)
    bounded.put_nowait(2)
    assert bounded.full()
    with pytest.raises(asyncio.QueueFull):
        bounded.put_nowait(3)
    assert [bounded.get_nowait(), bounded.get_nowait()] == [1, 2]

    dropping = Mailbox(2, drop_oldest=True)
    for item in (1, 2, 3):
        dropping.put_nowait(item)
    assert [dropping.get_nowait(), dropping.get_nowait()] == [2, 3]
    assert not Mailbox().full()


def test_the_oldest_item_is_readable_for_expiry():
    box = Mailbox()
    assert list(box._queue) == []
    box.put_nowait((1.0, "old"))
    box.put_nowait((2.0, "new"))
    assert box._queue[0] == (1.0, "old")


async def test_an_idle_mailbox_with_its_reader_waiting_takes_a_tenth_of_an_asyncio_queue():
    async def allocated(make) -> int:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            queues = [make() for _ in range(200)]
            readers = [asyncio.create_task(queue.get()) for queue in queues]
            await asyncio.sleep(0)
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        return used

    # The readers' tasks count on both sides; the queues make the difference.
    queue_bytes = await allocated(asyncio.Queue)
    mailbox_bytes = await allocated(Mailbox)
    task_bytes = await allocated(_NoQueue)
    assert (mailbox_bytes - task_bytes) * 10 < queue_bytes - task_bytes, (queue_bytes, mailbox_bytes, task_bytes)


class _NoQueue:
    """A reader waiting on a bare future: the cost of the waiting task alone."""

    def __init__(self) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def get(self) -> None:
        await self.future

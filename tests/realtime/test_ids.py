"""Connection and session ids: random, each with its own bytes."""

from __future__ import annotations

import threading

from realtime import ids


def test_ids_are_hex_of_the_asked_size_and_never_repeat_across_pool_refills():
    made = [ids.random_hex() for _ in range(3 * ids.POOL_BYTES // 16 + 7)]
    made += [ids.random_hex(10) for _ in range(500)]
    assert all(len(value) == 32 for value in made[:-500]) and all(len(value) == 20 for value in made[-500:])
    assert all(int(value, 16) >= 0 for value in made)
    assert len(set(made)) == len(made)
    # Bytes are spread: every hex digit turns up in every position of the 32.
    for position in range(32):
        assert {value[position] for value in made[:-500]} == set("0123456789abcdef")


def test_ids_taken_from_many_threads_at_once_are_all_distinct():
    found: list[list[str]] = [[] for _ in range(8)]

    def take(into: list[str]) -> None:
        into.extend(ids.random_hex() for _ in range(2000))

    threads = [threading.Thread(target=take, args=(into,)) for into in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for into in found for value in into]
    assert len(every) == 16000 and len(set(every)) == 16000

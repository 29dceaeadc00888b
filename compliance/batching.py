"""Splitting id and key lists into batches that fit one SQL statement."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

# Stays under SQLite's and PostgreSQL's bound-parameter limits in IN (...) lists.
LOOKUP_CHUNK = 900


def chunked[T](items: Sequence[T], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

"""One execution of a compiled query, whatever the database: where it runs
(``DatabaseTarget``), how it is stopped (``CancelHandle``, the time limit),
and how its rows stream to the caller in chunks with progress (``Run``).
No Django."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from queryengine import errors, values
from queryengine.compiler import CompiledQuery
from queryengine.errors import QueryError

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1
# Fetches grow up to this many rows while each one answers within
# FAST_FETCH_SECONDS: a large PostgreSQL result then takes far fewer round
# trips than with fetches of one chunk (500 rows).
MAX_FETCH_ROWS = 8000
FAST_FETCH_SECONDS = 0.02
PROGRESS_SECONDS = 0.2
PROGRESS_AFTER_SECONDS = 0.2
SQLITE_BATCH = 100
SQLITE_TICK_INSTRUCTIONS = 2000
SQLITE_ROWS_PER_MS = 2000
POSTGRES_COST_MS = 0.02
MAX_LOCK_TIMEOUT_MS = 2000
CANCEL_WAIT_SECONDS = 2.0

ChunkCallback = Callable[[list[list[Any]], list[dict[str, str]]], None]
ProgressCallback = Callable[[int, float | None], None]
EstimateCallback = Callable[[int], None]


@dataclass(frozen=True)
class DatabaseTarget:
    """Where queries run. ``grants`` are the catalog's real columns, which
    the PostgreSQL query role is given (and nothing else).

    On PostgreSQL, ``pg_params`` log in as the query role ``pg_role``;
    ``admin_params`` are Django's own login, used only to set the role up
    (``ensure_role``), giving it ``pg_password`` when that is not empty."""

    vendor: str
    sqlite_path: str = ""
    pg_params: Mapping[str, Any] = field(default_factory=dict)
    pg_role: str = "ledgercore_query"
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ensure_role: bool = True
    admin_params: Mapping[str, Any] = field(default_factory=dict)
    pg_password: str = field(default="", repr=False)

    @property
    def dialect(self) -> str:
        return "postgres" if self.vendor == "postgresql" else "sqlite"


class CancelHandle:
    """Stops a query from any thread: between chunks, and inside the
    database (SQLite interrupt, PostgreSQL backend cancel)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._interrupt: Callable[[], None] | None = None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        self.interrupt()

    def interrupt(self) -> None:
        with self._lock:
            hook = self._interrupt
        if hook is not None:
            try:
                hook()
            except Exception:  # the query may just have finished
                log.debug("interrupting a query failed", exc_info=True)

    def attach(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._interrupt = hook
        if self.cancelled:
            self.interrupt()

    def detach(self) -> None:
        with self._lock:
            self._interrupt = None


@dataclass(frozen=True)
class ExecutionResult:
    total_rows: int
    truncated: bool
    schema: list[dict[str, str]]
    estimated_ms: int


class Run:
    """One execution: limits, cancellation, chunking and progress."""

    on_estimate: EstimateCallback | None
    on_chunk: ChunkCallback | None
    on_progress: ProgressCallback | None

    def __init__(
        self, query: CompiledQuery, target: DatabaseTarget, time_limit_ms: int, chunk_rows: int, cancel: CancelHandle
    ) -> None:
        self.query = query
        self.target = target
        self.time_limit_ms = max(1, time_limit_ms)
        self.chunk_rows = chunk_rows
        self.cancel = cancel
        self.started = time.monotonic()
        self.deadline = self.started + self.time_limit_ms / 1000
        self.timed_out = False
        self.rows = 0
        self.estimated_ms = 0
        self.estimated_rows: int | None = None
        self.last_progress = 0.0
        self.last_pct: float | None = None
        self.progress_lock = threading.Lock()

    # -- limits ---------------------------------------------------------------

    def remaining_seconds(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def time_up(self) -> None:
        self.timed_out = True
        self.cancel.interrupt()

    def stopped(self) -> QueryError | None:
        if self.cancel.cancelled:
            return QueryError(errors.CANCELLED, "the query was cancelled")
        if self.timed_out or time.monotonic() >= self.deadline:
            self.timed_out = True
            return QueryError(errors.TIMEOUT, f"the query ran past its time limit of {self.time_limit_ms} ms")
        return None

    def check(self) -> None:
        stop = self.stopped()
        if stop is not None:
            raise stop

    def sqlite_tick(self) -> int:
        """SQLite progress handler: non-zero interrupts the statement."""
        try:
            if self.stopped() is not None:
                return 1
            self.progress()
        except errors.ConnectionGone:
            return 1
        except Exception:
            log.exception("query progress callback failed")
            return 1
        return 0

    # -- reporting ------------------------------------------------------------

    def estimated(self, estimated_ms: int, estimated_rows: int | None) -> None:
        self.estimated_ms = max(0, min(int(estimated_ms), self.time_limit_ms))
        self.estimated_rows = estimated_rows
        if self.on_estimate is not None:
            self.on_estimate(self.estimated_ms)

    def progress(self) -> None:
        """Report rows processed (and a percentage, never decreasing, when
        the rows are estimated): not before PROGRESS_AFTER_SECONDS, then at
        most once per PROGRESS_SECONDS (the protocol: at most 5 a second
        after 200 ms)."""
        now = time.monotonic()
        if self.on_progress is None or now - self.last_progress < PROGRESS_SECONDS:
            return
        if now - self.started < PROGRESS_AFTER_SECONDS:
            return
        with self.progress_lock:
            if now - self.last_progress < PROGRESS_SECONDS:
                return
            self.last_progress = now
            pct: float | None = None
            if self.estimated_rows:
                pct = min(99.0, round(self.rows * 100 / self.estimated_rows, 1))
                pct = max(pct, self.last_pct or 0.0)
                self.last_pct = pct
            self.on_progress(self.rows, pct)

    @contextmanager
    def ticking(self) -> Iterator[None]:
        """Report progress from a helper thread while this one is blocked in
        the driver (a PostgreSQL FETCH can take the whole time limit)."""
        done = threading.Event()

        def tick() -> None:
            while not done.wait(PROGRESS_SECONDS / 4):
                try:
                    self.progress()
                except errors.ConnectionGone:
                    return
                except Exception:
                    log.exception("query progress callback failed")
                    return

        ticker = threading.Thread(target=tick, name="query-progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()

    # -- streaming ------------------------------------------------------------

    def schema_for(self, description: Sequence[Any] | None) -> list[dict[str, str]]:
        names = [str(column[0]) for column in description or ()]
        compiled = self.query.schema
        if len(compiled) == len(names):
            return [dict(column) for column in compiled]
        return [{"name": name, "type": "unknown"} for name in names]

    def stream(self, cursor: Any, batch: int, *, fetch_ahead: bool = False) -> ExecutionResult:
        """Fetch and send every row, in chunks of ``chunk_rows``. Fetches
        start at ``batch`` rows and grow while the database answers at
        once (fewer round trips for a large result), and shrink again when
        it makes the rows wait (a slow query still sends what it has every
        FLUSH_SECONDS). With ``fetch_ahead`` a helper thread waits for the
        next fetch while this one converts and sends the last (PostgreSQL:
        the server produces rows meanwhile; the wait holds no GIL)."""
        schema = self.schema_for(cursor.description)
        convert: Callable[[Sequence[Sequence[Any]]], list[list[Any]]] | None = None
        buffer: list[Sequence[Any]] = []
        truncated = False
        last_flush = time.monotonic()
        smallest, largest = batch, max(batch, MAX_FETCH_ROWS)

        def flush(partial: bool) -> None:
            """Send full chunks, and the rest too when ``partial`` (rows
            waited long enough, or there are no more)."""
            nonlocal convert, buffer, last_flush
            if convert is None and buffer:
                _refine_types(schema, buffer)
                convert = values.rows_converter(schema)
            size = self.chunk_rows
            full = len(buffer) if partial else len(buffer) - len(buffer) % size
            for start in range(0, full, size):
                rows = convert(buffer[start : start + size]) if convert else []
                last_flush = time.monotonic()
                if self.on_chunk is not None:
                    self.on_chunk(rows, schema)
            del buffer[:full]

        def fetch(size: int) -> tuple[Sequence[Any], float]:
            asked = time.monotonic()
            return cursor.fetchmany(size), time.monotonic() - asked

        helper = ThreadPoolExecutor(1, thread_name_prefix="query-fetch") if fetch_ahead else None
        pending: Future[tuple[Sequence[Any], float]] | None = None
        try:
            while True:
                self.check()
                size = batch
                if pending is not None:
                    fetched, took = pending.result()
                    pending = None
                else:
                    fetched, took = fetch(size)
                if not fetched:
                    break
                room = self.query.max_rows - self.rows
                if len(fetched) > room:
                    fetched, truncated = fetched[:room], True
                buffer.extend(fetched)
                self.rows += len(fetched)
                if truncated:
                    break
                if took < FAST_FETCH_SECONDS and len(fetched) == size:
                    batch = min(batch * 2, largest)
                elif took > FLUSH_SECONDS:
                    batch = max(batch // 2, smallest)
                if helper is not None and len(fetched) == size:
                    pending = helper.submit(fetch, batch)
                flush(partial=time.monotonic() - last_flush >= FLUSH_SECONDS)
                self.progress()
            flush(partial=True)
        finally:
            if pending is not None:
                # The cursor must not be closed under a running fetch.
                wait([pending])
            if helper is not None:
                helper.shutdown()
        return ExecutionResult(self.rows, truncated, schema, self.estimated_ms)

    # -- errors ---------------------------------------------------------------

    def sanitize(self, message: str) -> str:
        text = message.strip().split("\n")[0][:300]
        for real in {*self.query.reads, *self.target.grants}:
            text = text.replace(real, "a catalog table")
        return text


def _refine_types(schema: list[dict[str, str]], rows: list[Sequence[Any]]) -> None:
    for index, column in enumerate(schema):
        if column["type"] != "unknown":
            continue
        sample = next((row[index] for row in rows if row[index] is not None), None)
        if sample is not None:
            column["type"] = values.guess_type(sample)

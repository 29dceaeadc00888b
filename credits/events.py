"""Credit events: every ledger entry written gets a durable outbox row in
the entry's transaction (``write_outbox``, called by the ledger model's
post_save signal: credits.signals); after commit the entry's events are
pushed to ``user:<userId>`` and the row is marked delivered. A batch's
events of one user go out in one publish (``realtime.push.broadcast_many``).
Rows left undelivered (a process died between commit and send, the layer
failed) are re-sent by the relay (credits.relay) of any server process.
Delivery is at-least-once; clients dedupe by ``sequence``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from channels.db import database_sync_to_async
from django.db import close_old_connections, connections, transaction
from django.db.models import F
from django.utils import timezone

from credits.models import EntryKind, LedgerEntry, OutboxEvent
from credits.payloads import balance_payload
from realtime import lifecycle, push
from realtime.layers import NoLocalReceivers

log = logging.getLogger(__name__)

GRANTED_KINDS = {EntryKind.GRANT, EntryKind.REFUND}
DEDUCTED_KINDS = {EntryKind.DEDUCTION, EntryKind.EXPIRY}


class EntryFacts(NamedTuple):
    """What an entry's events say about it (read without building models:
    ``_load``)."""

    pk: int
    kind: str
    amount: int
    spent: int
    balance_after: int
    lifetime_earned_after: int
    lifetime_spent_after: int
    action: str
    reason: str
    sequence: int
    created_at: datetime
    application_id: str


# EntryFacts' fields, as read through an outbox row.
_ENTRY_COLUMNS = (
    *(f"entry__{name}" for name in EntryFacts._fields[:-1]),
    "entry__account__application_id",
)


def events_for(entry: LedgerEntry) -> list[tuple[str, dict[str, Any]]]:
    """The events one entry produces, in order."""
    values = [getattr(entry, name) for name in EntryFacts._fields[:-1]]
    return _events(EntryFacts._make([*values, entry.account.application_id]))


def _events(entry: EntryFacts) -> list[tuple[str, dict[str, Any]]]:
    common = {
        "newBalance": entry.balance_after,
        "transactionId": str(entry.pk),
        "timestamp": int(entry.created_at.timestamp() * 1000),
        "applicationId": entry.application_id,
        "sequence": entry.sequence,
    }
    events: list[tuple[str, dict[str, Any]]] = []
    positive_adjustment = entry.kind == EntryKind.ADJUSTMENT and entry.amount > 0
    negative_adjustment = entry.kind == EntryKind.ADJUSTMENT and entry.amount < 0
    if entry.kind in GRANTED_KINDS or positive_adjustment:
        events.append(("credits_granted", {"amount": entry.amount, "reason": entry.reason or entry.kind, **common}))
    elif entry.kind in DEDUCTED_KINDS or negative_adjustment:
        events.append(("credits_deducted", {"amount": -entry.amount, "action": entry.action, **common}))
    elif entry.kind == EntryKind.CAPTURE and entry.spent > 0:
        events.append(("credits_deducted", {"amount": entry.spent, "action": entry.action, **common}))
    balance = balance_payload(
        application_id=entry.application_id,
        balance=entry.balance_after,
        lifetime_earned=entry.lifetime_earned_after,
        lifetime_spent=entry.lifetime_spent_after,
        sequence=entry.sequence,
    )
    events.append(("credit_balance_updated", balance))
    return events


def write_outbox(entry: LedgerEntry) -> None:
    """Record that ``entry``'s events must be sent, in the caller's (the
    entry's) transaction; called by the entry's post_save signal."""
    outbox = OutboxEvent.objects.create(entry=entry)
    # Only after commit: a rolled-back movement announces nothing. The send
    # happens on the dispatcher thread, so the committing caller never waits
    # for the channel layer.
    transaction.on_commit(lambda: _dispatcher.submit(outbox.pk))


def write_outbox_many(entries: list[LedgerEntry]) -> None:
    """``write_outbox`` for entries inserted together (one INSERT for all
    their rows); called by the ``entries_inserted`` signal."""
    rows = OutboxEvent.objects.bulk_create([OutboxEvent(entry=entry) for entry in entries])
    ids = [row.pk for row in rows]
    transaction.on_commit(lambda: _dispatcher.submit_many(ids))


Outgoing = tuple[int, str, list[tuple[str, dict[str, Any]]]]
# At most this many events in one publish (a row's events are never split).
PUBLISH_EVENTS = 500
# Publishes to different users' rooms in flight at once (each user's own
# go one after the other, in order).
ROOMS_AT_ONCE = 16


def _load(outbox_ids: list[int]) -> list[Outgoing]:
    """The undelivered rows among ``outbox_ids`` with their events, per
    account in sequence order (values, not model instances: the dispatcher
    shares the process's GIL with the writers)."""
    rows = (
        OutboxEvent.objects.filter(pk__in=outbox_ids, delivered_at__isnull=True)
        .order_by("entry__account_id", "entry__sequence")
        .values_list("pk", "entry__account__user__username", *_ENTRY_COLUMNS)
    )
    return [(row[0], row[1], _events(EntryFacts._make(row[2:]))) for row in rows]


class _Dispatcher:
    """One daemon thread per process with its own event loop (so the channel
    layer's connections are reused) that pushes committed entries' events."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[int | threading.Event] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, outbox_id: int) -> None:
        self.submit_many([outbox_id])

    def submit_many(self, outbox_ids: list[int]) -> None:
        for outbox_id in outbox_ids:
            self._queue.put(outbox_id)
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="credit-events", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while True:
                batch: list[int] = []
                flushed: list[threading.Event] = []
                item = self._queue.get()
                while True:
                    if isinstance(item, threading.Event):
                        flushed.append(item)
                        break  # what came before the marker is handled before it is set
                    batch.append(item)
                    if len(batch) >= 200:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                try:
                    if batch:
                        _deliver_with(batch, loop)
                except Exception:
                    log.exception("credit event dispatch failed; the relay will retry")
                finally:
                    if flushed:
                        connections.close_all()
                    else:
                        close_old_connections()
                for marker in flushed:
                    marker.set()
        finally:
            loop.close()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far has been handled, then have
        the thread close its database connection (shutdown, test teardown)."""
        if self._thread is None or not self._thread.is_alive():
            return True
        marker = threading.Event()
        self._queue.put(marker)
        return marker.wait(timeout)


_dispatcher = _Dispatcher()


def flush_dispatcher(timeout: float = 5.0) -> bool:
    return _dispatcher.flush(timeout)


# A shutdown pushes the events of what this process committed before its
# connections close.
lifecycle.add_work(lifecycle.Work("credit events", flush=lambda: flush_dispatcher(2.0)))


def _mark_all(delivered: list[int], failed: list[int]) -> None:
    """One UPDATE per outcome for a whole batch (not one per row)."""
    if delivered:
        OutboxEvent.objects.filter(pk__in=delivered).update(attempts=F("attempts") + 1, delivered_at=timezone.now())
    if failed:
        OutboxEvent.objects.filter(pk__in=failed).update(attempts=F("attempts") + 1)


def _publishes(outgoing: list[Outgoing]) -> dict[str, list[list[Outgoing]]]:
    """The rows grouped per user (their room), each user's in the order
    loaded (per account, in sequence order), cut so that one publish
    carries at most ``PUBLISH_EVENTS`` events (a row is never split)."""
    per_user: dict[str, list[list[Outgoing]]] = {}
    sizes: dict[str, int] = {}
    for row in outgoing:
        user_id, count = row[1], len(row[2])
        chunks = per_user.setdefault(user_id, [[]])
        if chunks[-1] and sizes[user_id] + count > PUBLISH_EVENTS:
            chunks.append([])
            sizes[user_id] = 0
        chunks[-1].append(row)
        sizes[user_id] = sizes.get(user_id, 0) + count
    return per_user


async def _send_user(user_id: str, chunks: list[list[Outgoing]], delivered: list[int], failed: list[int]) -> None:
    """One user's publishes, in order; a publish's rows count as delivered
    only once it succeeded. After a failure the user's later rows are left
    for the relay too, so that a client is not sent an account's later
    entries before its earlier ones."""
    for rows in chunks:
        try:
            await push.send_many_to_user(user_id, [event for _, _, events in rows for event in events])
        except NoLocalReceivers:
            return  # embedded stack, outside the server process: the server's relay sends it
        except Exception:
            log.exception("credit events of outbox rows %s not sent; the relay will retry", [row[0] for row in rows])
            failed.extend(row[0] for row in rows)
            return
        delivered.extend(row[0] for row in rows)


async def _send_all(outgoing: list[Outgoing], delivered: list[int], failed: list[int]) -> None:
    """Each user's events in one batched publish to their room (realtime.push
    ``broadcast_many``); up to ``ROOMS_AT_ONCE`` users' rooms at a time."""
    per_user = _publishes(outgoing)
    if len(per_user) == 1:
        for user_id, chunks in per_user.items():
            await _send_user(user_id, chunks, delivered, failed)
        return
    slots = asyncio.Semaphore(ROOMS_AT_ONCE)

    async def send(user_id: str, chunks: list[list[Outgoing]]) -> None:
        async with slots:
            await _send_user(user_id, chunks, delivered, failed)

    await asyncio.gather(*(send(user_id, chunks) for user_id, chunks in per_user.items()))


def _deliver_with(outbox_ids: list[int], loop: asyncio.AbstractEventLoop) -> int:
    delivered: list[int] = []
    failed: list[int] = []
    # One pass of the loop for the whole batch, the rows in order.
    loop.run_until_complete(_send_all(_load(outbox_ids), delivered, failed))
    _mark_all(delivered, failed)
    return len(delivered)


async def adeliver(outbox_ids: list[int]) -> int:
    """The same from the event loop (the relay)."""
    delivered: list[int] = []
    failed: list[int] = []
    await _send_all(await database_sync_to_async(_load)(outbox_ids), delivered, failed)
    await database_sync_to_async(_mark_all)(delivered, failed)
    return len(delivered)


def pending_ids(older_than_seconds: float, limit: int = 500) -> list[int]:
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        OutboxEvent.objects.filter(delivered_at__isnull=True, created_at__lte=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )

"""Group commit for movements on one account.

A movement holds its account's row lock until its COMMIT has been flushed to
disk, so movements on one busy account are serialised by the flush. Threads
of one process that want to move the same account at the same time hand
their movements to one of them (the leader), which applies them in order in
ONE transaction under ONE row lock: each movement still writes its own
entry, sequence and hash, each is still checked against the balance left by
the ones before it, and the whole batch commits with one flush.

A movement that fails a business rule (insufficient credits, invalid
movement) raises before it writes anything and only its own caller gets the
error. If the database refuses anything in the batch, the batch is rolled
back and every movement of it is retried alone, so one bad movement never
fails the others. Inside an enclosing transaction there is nothing to
combine: the movement runs at once in the caller's transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction

from credits.models import CreditAccount, LedgerEntry, entries_inserted

AccountKey = tuple[int, str]


class Session:
    """What a movement sees: its locked account and the idempotency keys
    already used on it (the database's, plus those of earlier movements of
    the same batch).

    Entries that nothing else refers to before the commit (``defer``) wait
    here and are inserted together by ``write_pending``: one INSERT for the entries
    and, through ``entries_inserted``, one for their outbox rows, whatever
    the number of movements in the batch. ``write_pending`` runs before any other
    entry is saved and before the account row is, so entries are inserted
    in sequence order."""

    def __init__(self, account: CreditAccount, known: dict[str, LedgerEntry] | None) -> None:
        self.account = account
        self._known = known
        self._pending: list[LedgerEntry] = []

    def defer(self, entry: LedgerEntry) -> None:
        self._pending.append(entry)

    def write_pending(self) -> None:
        if not self._pending:
            return
        entries, self._pending = self._pending, []
        LedgerEntry.objects.bulk_create(entries)
        entries_inserted.send(sender=LedgerEntry, instances=entries)

    def replayed(self, key: str | None) -> LedgerEntry | None:
        if not key:
            return None
        if self._known is not None:
            return self._known.get(key)
        return LedgerEntry.objects.filter(account=self.account, idempotency_key=key).first()

    def remember(self, entry: LedgerEntry) -> None:
        if self._known is not None:
            self._known[entry.idempotency_key] = entry

    @property
    def batched(self) -> bool:
        return self._known is not None


type Movement[T] = Callable[[Session], T]
LockAccount = Callable[[int, str], CreditAccount]


@dataclass
class _Request[T]:
    movement: Movement[T]
    idempotency_key: str | None
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    finished: bool = False
    result: T | None = None
    error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        # Set by the movement (which may itself return None) before finished.
        return cast(T, self.result)


ACCOUNT_FIELDS = [
    "balance",
    "lifetime_earned",
    "lifetime_spent",
    "last_sequence",
    "last_hash",
    "expiring",
    "updated_at",
]


class GroupCommit:
    def __init__(self, lock_account: LockAccount, business_errors: tuple[type[BaseException], ...]) -> None:
        self._lock_account = lock_account
        self._business_errors = business_errors
        self._mutex = threading.Lock()
        self._queues: dict[AccountKey, list[_Request[Any]]] = {}
        self._committing: dict[AccountKey, int] = {}
        self.batches = 0
        self.movements = 0

    def run[T](self, key: AccountKey, movement: Movement[T], idempotency_key: str | None = None) -> T:
        limit = settings.LEDGERCORE_GROUP_COMMIT_MAX
        if connection.in_atomic_block or limit <= 1:
            return self._alone(key, movement)
        request: _Request[T] = _Request(movement, idempotency_key)
        with self._mutex:
            queue = self._queues.get(key)
            if queue is None:
                # Nobody is working on this account: this thread leads.
                self._queues[key] = queue = []
                request.lead = True
            queue.append(request)
        if not request.lead:
            request.wake.wait()
            if request.finished:
                return request.outcome()
        # Leading: the queue's head is this request (FIFO), so the batch
        # taken now contains it.
        with self._mutex:
            batch = queue[:limit]
            del queue[:limit]
            self._committing[key] = len(batch)
        try:
            self._execute(key, batch)
        finally:
            with self._mutex:
                del self._committing[key]
                if queue:
                    queue[0].lead = True
                    queue[0].wake.set()
                else:
                    del self._queues[key]
        return request.outcome()

    def in_flight(self, key: AccountKey) -> int:
        """Movements on the account being committed or queued behind them."""
        with self._mutex:
            return len(self._queues.get(key, ())) + self._committing.get(key, 0)

    def _alone[T](self, key: AccountKey, movement: Movement[T]) -> T:
        with transaction.atomic():
            account = self._lock_account(*key)
            session = Session(account, None)
            result = movement(session)
            session.write_pending()
            account.save(update_fields=ACCOUNT_FIELDS)
            return result

    def _execute(self, key: AccountKey, batch: list[_Request[Any]]) -> None:
        try:
            self._execute_together(key, batch)
        except Exception:  # noqa: BLE001 - any database failure: retry each alone
            for request in batch:
                request.result, request.error = None, None
                try:
                    request.result = self._alone(key, request.movement)
                except Exception as exc:  # noqa: BLE001 - handed to its own caller
                    request.error = exc
        with self._mutex:
            self.batches += 1
            self.movements += len(batch)
        for request in batch:
            request.finished = True
            request.wake.set()

    def _execute_together(self, key: AccountKey, batch: list[_Request[Any]]) -> None:
        with transaction.atomic():
            account = self._lock_account(*key)
            keys = [r.idempotency_key for r in batch if r.idempotency_key]
            known: dict[str, LedgerEntry] = {}
            if keys:
                replays = LedgerEntry.objects.filter(account=account, idempotency_key__in=keys)
                known = {entry.idempotency_key: entry for entry in replays}
            session = Session(account, known)
            for request in batch:
                try:
                    request.result = request.movement(session)
                except self._business_errors as exc:
                    request.error = exc
            session.write_pending()
            account.save(update_fields=ACCOUNT_FIELDS)

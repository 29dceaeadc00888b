"""The ledger model's signal: every ledger entry saved announces itself.

``post_save`` of a new ``LedgerEntry`` writes the entry's outbox row
(``credits.events.write_outbox``) in the transaction that inserts the entry,
so the row commits or rolls back with it; after commit the entry's events
(``credits_granted`` / ``credits_deducted`` and ``credit_balance_updated``)
are pushed to the ``user:<userId>`` group, and the relay (``credits.relay``)
re-sends any row a process could not. Whatever code writes an entry (a
charge, a grant, an admin adjustment, an expiry) is announced the same way
without calling the event code itself.

Entries a batch of movements inserts together in one INSERT send no
``post_save``; the ledger sends ``entries_inserted`` with them instead, and
``announce_inserted`` writes their outbox rows in one INSERT, with the same
effect per entry.

Fixture loading (``raw``) saves rows as they are and announces nothing.
Connected by ``CreditsConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save

from credits import events
from credits.models import LedgerEntry, entries_inserted

DISPATCH_UID = "credits.ledger_entry_announced"
BULK_DISPATCH_UID = "credits.ledger_entries_announced"


def announce(sender: type[LedgerEntry], instance: LedgerEntry, created: bool, raw: bool, **kwargs: Any) -> None:
    if created and not raw:
        events.write_outbox(instance)


def announce_inserted(sender: type[LedgerEntry], instances: list[LedgerEntry], **kwargs: Any) -> None:
    events.write_outbox_many(instances)


def connect() -> None:
    post_save.connect(announce, sender=LedgerEntry, dispatch_uid=DISPATCH_UID)
    entries_inserted.connect(announce_inserted, sender=LedgerEntry, dispatch_uid=BULK_DISPATCH_UID)

"""``address:<chain>:<address>`` rooms: new transactions of watched addresses.

Ingestion that follows a chain as it grows (the Ethereum JSON-RPC ingester)
writes through a ``GraphWriter`` with ``publish=True``. After each batch
commits, the addresses it touched are checked against the rooms that have
subscribers (one presence lookup for the batch); for each watched address
the room gets ``address_transactions_update {chain, address, transactions}``
with the batch's transactions of that address, newest first, each entry
exactly as in ``address_transactions_response``. Bulk imports (BigQuery
files, the demo graph) do not publish.

Delivery is at least once: a batch ingested again (an overlapping range)
is announced again; clients dedupe entries by (hash, asset). Best effort
like every room broadcast: the stored transactions are the truth, and
``address_transactions`` pages them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import transaction

from compliance.history import transactions_among
from realtime import presence, push
from realtime.layers import NoLocalReceivers

log = logging.getLogger(__name__)

EVENT = "address_transactions_update"


def room_name(chain: str, address: str) -> str:
    return f"address:{chain}:{address}"


def publish_after_commit(chain: str, addresses: Iterable[str], tx_hashes: Iterable[str]) -> None:
    """Call inside the writing transaction: announced only if it commits."""
    touched, hashes = set(addresses), set(tx_hashes)
    if touched and hashes:
        transaction.on_commit(lambda: publish(chain, touched, hashes))


def publish(chain: str, addresses: set[str], tx_hashes: set[str]) -> int:
    """Announce ``tx_hashes`` to the watched ones of ``addresses``; returns
    how many rooms got an update."""
    try:
        return async_to_sync(_publish)(chain, addresses, tx_hashes)
    except Exception:
        log.exception("new %s transactions not announced to address rooms", chain)
        return 0


async def _publish(chain: str, addresses: set[str], tx_hashes: set[str]) -> int:
    rooms = {room_name(chain, address): address for address in addresses}
    watched = await presence.store().occupied(rooms)
    sent = 0
    for room in sorted(watched):
        address = rooms[room]
        entries = await database_sync_to_async(transactions_among)(chain, address, tx_hashes)
        if not entries:
            continue
        try:
            await push.broadcast(room, EVENT, {"chain": chain, "address": address, "transactions": entries})
        except NoLocalReceivers:
            continue  # embedded stack, outside the server process
        sent += 1
    return sent

"""Compliance events. For now: the ``address:<chain>:<address>`` room
namespace, open to any authenticated user, without presence events."""

from __future__ import annotations

import re

from realtime.context import RequestContext
from realtime.errors import NotFound, ValidationFailed
from realtime.rooms import Namespace, register_namespace

# Shape checks only; per-chain checksum validation belongs to address parsing.
ADDRESS_SHAPES = {
    "ethereum": re.compile(r"^0x[0-9a-fA-F]{40}$"),
    "bitcoin": re.compile(r"^(bc1[02-9ac-hj-np-z]{8,87}|[13][1-9A-HJ-NP-Za-km-z]{25,34})$"),
}


async def _authorize_address_room(ctx: RequestContext, rest: str) -> None:
    chain, _, address = rest.partition(":")
    shape = ADDRESS_SHAPES.get(chain)
    if shape is None:
        raise NotFound(f"unknown chain {chain[:40]!r}", room=f"address:{rest}")
    if not shape.match(address):
        raise ValidationFailed("bad address", {"room": [f"Not a valid {chain} address."]})


register_namespace(
    Namespace(
        "address",
        _authorize_address_room,
        presence_events=False,
        description="New transactions of a watched address; open to any authenticated user.",
    )
)

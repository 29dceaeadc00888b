"""Compliance events. For now: the ``address:<chain>:<address>`` room
namespace, open to any authenticated user, without presence events."""

from __future__ import annotations

from compliance.addresses import InvalidAddress, UnknownChain, normalize_chain_address
from realtime.context import RequestContext
from realtime.errors import NotFound, ValidationFailed
from realtime.rooms import Namespace, register_namespace


async def _authorize_address_room(ctx: RequestContext, rest: str) -> None:
    # Pure computation (checksums), no database: fine on the event loop.
    chain, _, address = rest.partition(":")
    try:
        normalize_chain_address(chain, address)
    except UnknownChain:
        raise NotFound(f"unknown chain {chain[:40]!r}", room=f"address:{rest}") from None
    except InvalidAddress as exc:
        raise ValidationFailed("bad address", {"room": [f"Not a valid {chain} address: {exc}"]}) from None


register_namespace(
    Namespace(
        "address",
        _authorize_address_room,
        presence_events=False,
        description="New transactions of a watched address; open to any authenticated user.",
    )
)

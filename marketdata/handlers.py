"""Market data events. For now: the ``market:<SYMBOL>:<resolution>`` room
namespace, open to any authenticated user, without presence events."""

from __future__ import annotations

import re

from realtime.context import RequestContext
from realtime.errors import ValidationFailed
from realtime.rooms import Namespace, register_namespace

RESOLUTIONS = ("100ms", "250ms", "500ms", "1s", "5s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d")
SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,20}-[A-Z0-9]{1,20}$")


async def _authorize_market_room(ctx: RequestContext, rest: str) -> None:
    symbol, _, resolution = rest.rpartition(":")
    if not SYMBOL_RE.match(symbol):
        raise ValidationFailed("bad market room", {"room": ["Expected market:<BASE-QUOTE>:<resolution>."]})
    if resolution not in RESOLUTIONS:
        raise ValidationFailed("bad resolution", {"room": [f"Resolution must be one of {' '.join(RESOLUTIONS)}."]})


register_namespace(
    Namespace(
        "market",
        _authorize_market_room,
        presence_events=False,
        description="Live chart of a symbol at a resolution; open to any authenticated user.",
    )
)

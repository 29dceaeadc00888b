"""LedgerCore Realtime client: :class:`AsyncClient` (asyncio), :class:`Client`
(blocking), typed events and wire errors as exceptions."""

from ledgercore_client.client import AsyncClient
from ledgercore_client.errors import (
    ConnectionLost,
    InsufficientCredits,
    LedgerCoreError,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from ledgercore_client.events import Event
from ledgercore_client.sync import Client

__all__ = [
    "AsyncClient",
    "Client",
    "ConnectionLost",
    "Event",
    "InsufficientCredits",
    "LedgerCoreError",
    "NotFound",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
]

"""Session authentication of WebSocket handshakes (staff browsers), without
a database hop for the connections that carry no session cookie.

channels' ``AuthMiddleware`` resolves ``scope["user"]`` on the ORM thread
for every handshake, also when there is no session to read: one thread hop
per connection, on the thread every other socket's database work waits
for. Token clients (every program, the console) send no session cookie;
their user is anonymous without asking the database. A handshake with a
session cookie is resolved by channels as before.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth.models import AnonymousUser


class SessionAuthMiddleware(AuthMiddleware):  # type: ignore[misc]  # channels is untyped
    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        if scope["session"].session_key is None:
            scope["user"]._wrapped = AnonymousUser()
            return
        await super().resolve_scope(scope)


def SessionAuthStack(inner: Any) -> Any:  # noqa: N802 - named as channels' AuthMiddlewareStack
    """channels' AuthMiddlewareStack with SessionAuthMiddleware."""
    return CookieMiddleware(SessionMiddleware(SessionAuthMiddleware(inner)))

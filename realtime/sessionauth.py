"""Session authentication of WebSocket handshakes (staff browsers), left
out of the connections that carry no session cookie.

channels' session and auth middleware resolve ``scope["user"]`` on the ORM
thread for every handshake, also when there is no session to read (one
thread hop per connection, on the thread every other socket's database
work waits for), and wrap every later send of the connection to save a
session that cannot have changed. Token clients (every program, the
console) send no session cookie: their scope gets an empty session and an
anonymous user, and their sends go straight to the server. A handshake
with a session cookie goes through channels' middleware as before.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser


class _SessionOrNot:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.with_session = SessionMiddleware(AuthMiddleware(inner))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if settings.SESSION_COOKIE_NAME in scope["cookies"]:
            return await self.with_session(scope, receive, send)
        store = import_module(settings.SESSION_ENGINE).SessionStore
        scope = {**scope, "session": store(None), "user": AnonymousUser()}
        return await self.inner(scope, receive, send)


def SessionAuthStack(inner: Any) -> Any:  # noqa: N802 - named as channels' AuthMiddlewareStack
    """channels' AuthMiddlewareStack, for handshakes with a session cookie."""
    return CookieMiddleware(_SessionOrNot(inner))

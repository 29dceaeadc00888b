"""Baseline for bench/http_api.py: the project's ASGI application with HTTP
served by Django's own ASGIHandler (middleware run asynchronously, a thread
hop per middleware half) instead of ``ledgercore.http``. WebSockets as in
``ledgercore.asgi``."""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIHandler

from ledgercore.asgi import application as project

_stock = ASGIHandler()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await _stock(scope, receive, send)
        return
    await project(scope, receive, send)

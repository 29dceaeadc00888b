"""URL routes of Socket.IO: ``/socket.io/`` for HTTP long-polling and
WebSocket; in the conformance configuration also ``/engine.io/`` (the
Engine.IO suite's echo server)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import re_path

from socketio_gateway.consumers import PollingConsumer, WebsocketConsumer
from socketio_gateway.engine import EngineSession


def _session_classes() -> tuple[type[EngineSession], type[EngineSession] | None]:
    if settings.LEDGERCORE_SOCKETIO_CONFORMANCE:
        from socketio_gateway.conformance import (  # noqa: PLC0415 - the test configuration only
            EchoEngineSession,
            EchoSocketIOSession,
        )

        return EchoSocketIOSession, EchoEngineSession
    from socketio_gateway.product import ProductSession  # noqa: PLC0415 - avoids loading apps before settings

    return ProductSession, None


def _routes(consumer: Any) -> list[Any]:
    socketio, engineio = _session_classes()
    routes = [re_path(r"^socket\.io/$", consumer.as_asgi(session_class=socketio))]
    if engineio is not None:
        routes.append(re_path(r"^engine\.io/$", consumer.as_asgi(session_class=engineio)))
    return routes


def http_urlpatterns() -> list[Any]:
    return _routes(PollingConsumer)


def websocket_urlpatterns() -> list[Any]:
    return _routes(WebsocketConsumer)

"""Health probes, metrics and the AsyncAPI document."""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from collections.abc import Awaitable

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST

from realtime import lifecycle
from realtime import metrics as metrics_module
from realtime import redis as lcredis
from realtime.asyncapi import build_document

log = logging.getLogger(__name__)
READY_TIMEOUT_SECONDS = 3.0


async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and its event loop answers."""
    return JsonResponse({"status": "ok"})


def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_layer_answers() -> None:
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "readyz.probe", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned another message")


async def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the channel layer (and Redis, if configured) answer,
    and the process is not shutting down."""
    if lifecycle.draining():
        return JsonResponse({"status": "draining", "checks": {}}, status=503)
    checks: dict[str, Awaitable[object]] = {
        "database": database_sync_to_async(_database_answers)(),
        "channel_layer": _channel_layer_answers(),
    }
    if lcredis.enabled():
        checks["redis"] = lcredis.command("PING")
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, READY_TIMEOUT_SECONDS)
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports whatever a check raised
            log.warning("readiness check %s failed: %s", name, type(exc).__name__)
            results[name] = f"failed: {type(exc).__name__}"
    ready = all(v == "ok" for v in results.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503)


async def asyncapi_document(request: HttpRequest) -> JsonResponse:
    return JsonResponse(build_document(), json_dumps_params={"indent": 2})


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of every process's series (realtime.metrics);
    with ``LEDGERCORE_METRICS_TOKEN`` set, only for ``Authorization: Bearer
    <token>``."""
    expected = settings.LEDGERCORE_METRICS_TOKEN
    if expected:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return HttpResponse("metrics need the scrape token\n", status=401, content_type="text/plain")
    return HttpResponse(metrics_module.render(), content_type=CONTENT_TYPE_LATEST)

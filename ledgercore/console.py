"""The browser console at ``/``: one page, its scripts and styles served as
static files (whitenoise). Everything it shows comes over the native
WebSocket protocol and the HTTP API with the token the visitor pastes."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from marketdata.interface import Instrument

RESOLUTIONS = ("1s", "5s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d")
FALLBACK_SYMBOLS = ("BTC-USD", "ETH-USD", "XRP-ETH")


@require_GET
def console(request: HttpRequest) -> HttpResponse:
    symbols = list(Instrument.objects.order_by("symbol").values_list("symbol", flat=True)[:200])
    return render(
        request,
        "console/index.html",
        {"symbols": symbols or list(FALLBACK_SYMBOLS), "resolutions": RESOLUTIONS},
    )

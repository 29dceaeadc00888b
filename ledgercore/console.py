"""The browser console at ``/``: one page, its scripts and styles served as
static files (whitenoise). Everything it shows comes over the native
WebSocket protocol and the HTTP API with the token the visitor pastes."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from marketdata.interface import RESOLUTIONS, Instrument

FALLBACK_SYMBOLS = ("BTC-USD", "ETH-USD", "XRP-ETH")


@require_GET
def console(request: HttpRequest) -> HttpResponse:
    symbols = list(Instrument.objects.order_by("symbol").values_list("symbol", flat=True)[:200])
    return render(
        request,
        "console/index.html",
        {"symbols": symbols or list(FALLBACK_SYMBOLS), "resolutions": RESOLUTIONS},
    )

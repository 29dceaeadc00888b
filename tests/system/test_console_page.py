"""The console page at ``/`` on a real server: the page, and every script,
style sheet and the vendored chart library it references, served by the
same server (whitenoise); nothing from another host."""

from __future__ import annotations

import re
import urllib.request

import pytest

from marketdata.models import Instrument
from marketdata.resolutions import RESOLUTIONS


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


@pytest.mark.django_db(transaction=True)
def test_the_console_and_its_assets_are_served_by_the_server(live_server_url):
    Instrument.objects.create(symbol="SOL-USD", base="SOL", quote="USD")
    base = live_server_url.replace("ws://", "http://")
    status, kind, body = get(f"{base}/")
    page = body.decode()
    assert status == 200 and kind.startswith("text/html")
    assert "<option>SOL-USD</option>" in page
    # The resolution picker: every chart resolution, 100 ms to 1 d (1 s chosen).
    picker = page.split('id="resolution"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r"<option[^>]*>([^<]+)</option>", picker) == [*RESOLUTIONS]
    assert "<option selected>1s</option>" in picker
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert any(a.endswith("lightweight-charts.standalone.production.js") for a in assets)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
    modules = {"app.js", "ws.js", "ui.js", "chart.js", "timescale.js", "query.js", "chat.js", "compliance.js"}
    modules |= {"credits.js", "rooms.js"}
    for path in [*assets, *(f"/static/console/{m}" for m in modules)]:
        status, kind, body = get(f"{base}{path}")
        assert status == 200 and body, path
        if path.endswith(".js"):
            assert "javascript" in kind, (path, kind)
    for module in ("app.js", "chart.js"):
        status, _, body = get(f"{base}/static/console/{module}")
        imported = set(re.findall(r'from "\./([a-z]+\.js)"', body.decode()))
        assert imported <= modules, module

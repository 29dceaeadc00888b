"""The server (ledgercore.serve) leaves autobahn's per-connection debug
formatting to when debug lines are logged."""

from __future__ import annotations

import subprocess
import sys

from devtools.servers import ROOT

SCRIPT = """
import txaio
from autobahn.twisted import websocket  # as daphne: txaio on Twisted
from autobahn.websocket import protocol
from ledgercore import serve

options = [("openHandshakeTimeout", 5, "WebSocketServerFactory")]
before = protocol.pformat(options)
serve.format_only_for_debug()
print(repr(before))
print(repr(protocol.pformat(options)))
txaio.set_global_log_level("debug")
print(repr(protocol.pformat(options)))
"""


def test_autobahn_formats_its_connection_options_only_when_debug_is_logged():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    before, at_info, at_debug = result.stdout.splitlines()
    assert "openHandshakeTimeout" in before
    assert at_info == "''"
    assert at_debug == before

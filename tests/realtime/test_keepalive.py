"""Keepalive: the server pings a connection that has shown no sign of life
for its ping interval; a client's own pings, like its messages, are such a
sign (and its pongs keep the path open), so a pinging client is not pinged."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.servers import DaphneProcess, manage
from tests import rawws
from tests.wsclient import DEV_SECRET, dev_token, unique

PING_INTERVAL = 1
WINDOW_SECONDS = 6.0


@pytest.fixture(scope="module")
def pinging_daphne(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    var = tmp_path_factory.mktemp("keepalive")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update({"LEDGERCORE_VAR_DIR": str(var), "LEDGERCORE_DEV_JWT_SECRET": DEV_SECRET, "PYTHONUNBUFFERED": "1"})
    manage(env, "migrate", "--noinput", "-v", "0")
    server = DaphneProcess(env, Path(var) / "daphne.log", args=("--ping-interval", str(PING_INTERVAL))).start()
    try:
        yield server
    finally:
        server.stop()


def opcodes_seen(raw: rawws.RawSocket, seconds: float, ping_every: float | None) -> list[int]:
    """Every frame's opcode for ``seconds`` (pings answered with a pong, as
    any client must), sending a ping of its own every ``ping_every``."""
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    next_ping = time.monotonic()
    raw.sock.settimeout(0.05)
    while time.monotonic() < deadline:
        if ping_every is not None and time.monotonic() >= next_ping:
            raw.send(rawws.frame(rawws.PING, b"client"))
            next_ping += ping_every
        try:
            opcode, payload = raw.recv_frame()
        except TimeoutError:
            continue
        seen.append(opcode)
        if opcode == rawws.PING:
            raw.send(rawws.frame(rawws.PONG, payload))
    return seen


def test_a_client_that_pings_is_not_pinged_and_a_silent_one_is(pinging_daphne):
    port = pinging_daphne.port
    pinging = rawws.RawSocket.connect(port, dev_token(unique("pinging")))
    silent = rawws.RawSocket.connect(port, dev_token(unique("silent")))
    try:
        assert pinging.expect("connected")["event"] == "connected"
        assert silent.expect("connected")["event"] == "connected"
        # One after the other: a client that pings (every half interval)...
        from_pinging = opcodes_seen(pinging, WINDOW_SECONDS, ping_every=PING_INTERVAL / 2)
        # ...and one that only answers what it is sent.
        from_silent = opcodes_seen(silent, WINDOW_SECONDS, ping_every=None)
    finally:
        pinging.close()
        silent.close()
    assert from_pinging.count(rawws.PONG) >= int(WINDOW_SECONDS / (PING_INTERVAL / 2)) - 1
    assert from_pinging.count(rawws.PING) == 0, from_pinging
    # daphne looks every 2 s: a silent connection is pinged each time.
    assert from_silent.count(rawws.PING) >= 2, from_silent

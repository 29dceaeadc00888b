"""Two server processes sharing Redis, no sticky sessions: one Socket.IO
session, opened on process A, is served to requests that alternate between
A and B, and is upgraded to a WebSocket opened on B. Requests reach the
session's process through the channel layer."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from websockets.sync.client import connect

from devtools.servers import DaphneProcess
from tests.stacks import stack_env
from tests.wsclient import dev_token

ROOM = "application:app_demo"


def _get(base: str, sid: str) -> list[str]:
    with urllib.request.urlopen(f"{base}/socket.io/?EIO=4&transport=polling&sid={sid}", timeout=60) as response:
        assert response.status == 200
        return response.read().decode().split("\x1e")


def _post(base: str, sid: str, body: str) -> None:
    request = urllib.request.Request(
        f"{base}/socket.io/?EIO=4&transport=polling&sid={sid}", data=body.encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.read() == b"ok"


def _poll_until(bases: list[str], sid: str, predicate, timeout: float = 30.0) -> list[str]:
    """Polls, alternating between the processes, until a packet matches."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    turn = 0
    while time.monotonic() < deadline:
        packets = _get(bases[turn % len(bases)], sid)
        turn += 1
        for packet in packets:
            if packet == "2":  # the server's ping
                _post(bases[turn % len(bases)], sid, "3")
            seen.append(packet)
            if predicate(packet):
                return seen
    raise AssertionError(f"no matching packet in {timeout}s: {seen}")


@pytest.mark.redis_stack
def test_a_session_is_served_by_either_process_without_sticky_sessions(tmp_path):
    with stack_env(tmp_path, True) as env:
        a = DaphneProcess(env, tmp_path / "a.log").start()
        b = DaphneProcess(env, tmp_path / "b.log").start()
        try:
            with urllib.request.urlopen(f"{a.http}/socket.io/?EIO=4&transport=polling", timeout=30) as response:
                handshake = json.loads(response.read().decode()[1:])
            sid = handshake["sid"]
            assert handshake["upgrades"] == ["websocket"]

            _post(b.http, sid, "40" + json.dumps({"token": dev_token("demo_user")}))
            seen = _poll_until([b.http, a.http], sid, lambda p: p.startswith('42["connected"'))
            assert any(p.startswith('40{"sid":') for p in seen)

            _post(a.http, sid, '421["subscribe",{"room":"' + ROOM + '"}]')
            seen = _poll_until([b.http, a.http], sid, lambda p: p.startswith("431"))
            ack = json.loads(seen[-1][3:])
            assert ack == [{"event": "subscribed", "data": {"room": ROOM, "subscriberCount": 1}}]

            # A native member on B: counted, and announced to the session on A.
            with connect(f"{b.url}/ws?token={dev_token('demo_teammate')}") as native:
                native.send(json.dumps({"event": "subscribe", "data": {"room": ROOM}, "id": 1}))
                while (frame := json.loads(native.recv(timeout=15)))["event"] != "subscribed":
                    pass
                assert frame["data"]["subscriberCount"] == 2
                _poll_until([b.http, a.http], sid, lambda p: p.startswith('42["user_joined_room"'))

            # Upgrade to a WebSocket opened on the other process.
            with connect(f"{b.url}/socket.io/?EIO=4&transport=websocket&sid={sid}") as ws:
                ws.send("2probe")
                assert ws.recv(timeout=15) == "3probe"
                ws.send("5")
                ws.send('422["ping",{}]')
                while not (packet := ws.recv(timeout=15)).startswith("432"):
                    pass
                assert json.loads(packet[3:])[0]["event"] == "pong"
                # Polling the upgraded session is refused.
                with pytest.raises(urllib.error.HTTPError) as refused:
                    _get(a.http, sid)
                assert refused.value.code == 400
            # The WebSocket closed, the session ended on A: both processes
            # answer that the sid is unknown (B when A does not answer for it).
            # (The close reaches A through the channel layer: until then A
            # answers that the session does not poll.)
            for base in (a.http, b.http):
                deadline = time.monotonic() + 30
                while True:
                    with pytest.raises(urllib.error.HTTPError) as gone:
                        _get(base, sid)
                    assert gone.value.code == 400
                    code = json.loads(gone.value.read())["code"]
                    if code == 1 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert code == 1
        finally:
            a.stop()
            b.stop()

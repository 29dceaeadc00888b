"""Hostile frames: lone surrogates and invalid UTF-8 get validation_error with
the connection kept; a message over the transport maximum is closed with
1009 and a reason (daphne, as deployed); a socket that is closing drops
what handlers send to it instead of raising into them."""

from __future__ import annotations

import json
import struct
import time

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from tests.rawws import CLOSE, TEXT, RawSocket, close_frame, daphne  # noqa: F401 - daphne is a fixture
from tests.rawws import frame as ws_frame
from tests.wsclient import Client, dev_token, unique

MAX_MESSAGE = 1 << 20  # LEDGERCORE_MAX_MESSAGE_BYTES default
MAX_FRAME = 1 << 16  # LEDGERCORE_MAX_FRAME_BYTES default

SURROGATE_FRAMES = [
    # (frame text as sent, field named in errors, id echoed)
    (r'{"event":"ping","id":"\ud800"}', "id", None),
    (r'{"event":"pi\udfffng","id":"s2"}', "event", "s2"),
    (r'{"event":"subscribe","data":{"room":"application:\udc00x"},"id":3}', "data.room", 3),
    (r'{"event":"subscribe","data":{"ro\ud83dom":"a"},"id":4}', "data", 4),
    (r'{"event":"ping","data":{"a":[1,{"b":["\ude00"]}]},"id":5}', "data.a.1.b.0", 5),
    (r'{"event":"ping","\ud800":1,"id":6}', "frame", 6),
    (r'["\udbff"]', "0", None),
]


@pytest.mark.django_db(transaction=True)
async def test_lone_surrogates_anywhere_give_validation_error_and_keep_the_connection(live_server_url):
    client = await Client.connect(live_server_url, dev_token(unique("sur")))
    assert (await client.recv())["event"] == "connected"
    for text, field, request_id in SURROGATE_FRAMES:
        await client.send_raw(text)
        reply = await client.expect("validation_error")
        assert field in reply["data"]["errors"], (text, reply)
        assert reply["data"]["code"] == "VALIDATION_FAILED"
        assert reply.get("id") == request_id, (text, reply)
    # A valid surrogate pair is a character like any other.
    await client.send_raw(r'{"event":"ping","id":"\ud83d\ude00"}')
    assert (await client.expect("pong"))["id"] == "\U0001f600"
    await client.close()


def connected(daphne, user: str) -> RawSocket:  # noqa: F811 - the fixture's value
    raw = RawSocket.connect(daphne.port, dev_token(unique(user)))
    raw.expect("connected")
    return raw


def test_invalid_utf8_text_frames_give_validation_error_under_daphne(daphne):  # noqa: F811
    raw = connected(daphne, "utf8")
    for payload in (
        b'{"event":"ping","id":"\xff"}',
        b'{"event":"ping","id":"\xed\xa0\x80"}',  # an encoded surrogate
        b'{"event":"ping","id":"\xe2\x82"}',  # truncated sequence
        b"\xc0\xaf",  # overlong encoding
    ):
        raw.send_text(payload)
        reply = raw.expect("validation_error")
        assert "frame" in reply["data"]["errors"], reply
        assert "UTF-8" in reply["data"]["errors"]["frame"][0]
    raw.send_text(json.dumps({"event": "ping", "id": "after"}))
    assert raw.expect("pong")["id"] == "after"
    raw.close()


def test_frame_between_the_frame_limit_and_the_transport_maximum_gets_validation_error(daphne):  # noqa: F811
    with connect(f"{daphne.url}/ws?token={dev_token(unique('big'))}", max_size=None) as ws:
        assert json.loads(ws.recv(timeout=10))["event"] == "connected"
        ws.send(json.dumps({"event": "ping", "data": {"pad": "x" * (MAX_MESSAGE - 100)}, "id": "big"}))
        while (reply := json.loads(ws.recv(timeout=10)))["event"] != "validation_error":
            pass
        assert "frame" in reply["data"]["errors"]
        assert f"{MAX_FRAME}" in reply["data"]["message"]
        ws.send(json.dumps({"event": "ping", "id": "still-up"}))
        while (reply := json.loads(ws.recv(timeout=10)))["event"] != "pong":
            pass


@pytest.mark.parametrize("fragments", [1, 4], ids=["one-frame", "fragmented"])
def test_message_over_the_transport_maximum_is_closed_with_1009_and_a_reason(daphne, fragments):  # noqa: F811
    with connect(f"{daphne.url}/ws?token={dev_token(unique('huge'))}", max_size=None) as ws:
        assert json.loads(ws.recv(timeout=10))["event"] == "connected"
        size = MAX_MESSAGE + 1
        text = '{"event":"ping","data":{"pad":"' + "x" * (size - 34) + '"}}'
        assert len(text) == size
        step = -(-size // fragments)
        with pytest.raises(ConnectionClosedError) as closed:
            # The server may close while later fragments are still going out:
            # the close frame is then found by the send instead of a recv.
            ws.send(text if fragments == 1 else [text[i : i + step] for i in range(0, size, step)])
            while True:
                ws.recv(timeout=10)
        received = closed.value.rcvd
        assert received is not None, "no close frame: the TCP connection was dropped"
        assert received.code == 1009
        assert f"exceeds the {MAX_MESSAGE}-byte limit" in received.reason
    assert f"with 1009: message of {MAX_MESSAGE + 1} bytes" in daphne.logs()
    # The process goes on serving.
    with connect(f"{daphne.url}/ws?token={dev_token(unique('next'))}") as ws:
        assert json.loads(ws.recv(timeout=10))["event"] == "connected"


def test_a_client_still_sending_an_oversized_message_gets_the_close_frame_not_a_reset(daphne):  # noqa: F811
    """The client sends a fragmented message over the maximum, then takes
    longer than autobahn's 1 s close-handshake timeout to finish it and
    read (a client busy sending, on a loaded machine): it still finds the
    1009 close frame, and its close reply completes the handshake."""
    raw = connected(daphne, "slowhuge")
    size = MAX_MESSAGE + 1
    step = -(-size // 4)
    payload = b"x" * size
    for n, start in enumerate(range(0, size, step)):
        raw.send(ws_frame(TEXT if n == 0 else 0x0, payload[start : start + step], fin=False))
    time.sleep(2.5)
    raw.send(ws_frame(0x0, b"", fin=True))
    while (got := raw.recv_frame())[0] != CLOSE:
        pass
    assert struct.unpack("!H", got[1][:2])[0] == 1009
    assert f"exceeds the {MAX_MESSAGE}-byte limit" in got[1][2:].decode()
    raw.send(close_frame(1009))
    with pytest.raises((EOFError, ConnectionResetError)):  # then the server ends the TCP connection
        raw.recv_frame()
    raw.close()


def test_sends_to_a_closing_socket_are_dropped_not_raised(daphne):  # noqa: F811
    """Requests, then at once the header of a message over the maximum, in
    one TCP write: the server queues the requests, closes with 1009 and
    waits for the client's close frame, which never comes. Meanwhile its
    handlers answer the requests on a socket that is closing."""
    offset = len(daphne.logs())
    raw = connected(daphne, "closing")
    requests = b"".join(ws_frame(TEXT, json.dumps({"event": "ping", "id": i}).encode()) for i in range(30))
    oversized_header = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 2 * MAX_MESSAGE) + b"mask"
    raw.send(requests + oversized_header)
    while (got := raw.recv_frame())[0] != CLOSE:
        pass
    assert struct.unpack("!H", got[1][:2])[0] == 1009
    with pytest.raises((EOFError, ConnectionResetError)):
        while True:  # no close reply: the server drops the TCP connection after its close timeout
            raw.recv_frame()
    raw.close()
    deadline = time.monotonic() + 10
    while "dropped a frame for a closing socket" not in daphne.logs()[offset:] and time.monotonic() < deadline:
        time.sleep(0.1)
    logs = daphne.logs()[offset:]
    assert "dropped a frame for a closing socket" in logs, "the closing-socket path was not exercised"
    for bad in ("Traceback", "Exception inside application"):
        assert bad not in logs, logs[logs.find(bad) - 2000 : logs.find(bad) + 2000]
    raised = [line for line in logs.splitlines() if "closed protocol" in line and "dropped a frame" not in line]
    assert not raised, raised
    raw = connected(daphne, "after")
    raw.send_text(json.dumps({"event": "ping", "id": 1}))
    assert raw.expect("pong")["id"] == 1
    raw.close()


def test_decoder_rejects_surrogates_cheaply_and_accepts_pairs():
    from realtime.protocol import decode

    frame, _, error = decode(r'{"event":"ping","data":{"t":"caf\u00e9 \ud83d\ude00"}}', None, MAX_FRAME)
    assert error is None and frame is not None and frame.data["t"] == "café \U0001f600"
    frame, parsed, error = decode(r'{"event":"ping","id":7,"data":{"t":"\ud83d"}}', None, MAX_FRAME)
    assert frame is None and error is not None and set(error.errors) == {"data.t"}
    assert parsed == {"event": "ping", "id": 7}
    # A literal backslash followed by "ud800" is not an escape.
    frame, _, error = decode(r'{"event":"ping","data":{"t":"\\ud800"}}', None, MAX_FRAME)
    assert error is None and frame is not None and frame.data["t"] == "\\ud800"
    # Invalid UTF-8 as the transport passes it on (surrogate escapes).
    frame, parsed, error = decode(b'{"event":"\xff"}'.decode("utf-8", "surrogateescape"), None, MAX_FRAME)
    assert frame is None and parsed is None and error is not None and "frame" in error.errors


def test_a_protocol_violation_is_closed_with_1002_and_a_reason(daphne):  # noqa: F811
    raw = connected(daphne, "violation")
    raw.send(bytes([0x81, 4]) + b"ping")  # unmasked client frame (RFC 6455 5.1)
    while (got := raw.recv_frame())[0] != CLOSE:
        pass
    assert struct.unpack("!H", got[1][:2])[0] == 1002
    assert b"unmasked" in got[1][2:]
    raw.close()

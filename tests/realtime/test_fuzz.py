"""Fuzzing the frame decoder and the consumer with hypothesis: arbitrary
JSON and envelopes, lone surrogates (raw, and as JSON escapes anywhere in a
frame), invalid UTF-8, and frames around both size limits."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.protocol import Frame, decode, encode, peek_id
from tests import rawws
from tests.rawws import daphne  # noqa: F401 - a fixture
from tests.wsclient import Client, dev_token, unique

MAX_FRAME = 65536  # LEDGERCORE_MAX_FRAME_BYTES default
MAX_MESSAGE = 1 << 20  # LEDGERCORE_MAX_MESSAGE_BYTES default

# Text with lone surrogates among ordinary characters.
surrogate_text = st.lists(st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=20).map(
    "".join
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50) | surrogate_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10) | surrogate_text, children, max_size=5)
    ),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["ping", "subscribe", "unsubscribe", "nope", ""])
        | st.text(max_size=20)
        | surrogate_text
        | json_values,
        "data": json_values | st.dictionaries(st.sampled_from(["room", "x"]), json_values, max_size=3),
        "id": st.integers() | st.text(max_size=70) | surrogate_text | json_values,
    },
)
# Sendable as WebSocket text: json.dumps writes lone surrogates as \uXXXX escapes.
text_frames = (
    st.text(max_size=300)
    | json_values.map(json.dumps)
    | envelopes.map(json.dumps)
    | st.just("[" * 5000 + "]" * 5000)
    | st.just('{"event": "ping", "data": ' + "[" * 100_000 + "]" * 100_000 + "}")
)
# As the decoder may also get them: raw surrogates, invalid UTF-8 as the
# transport passes it on (surrogate escapes), frames around the size limit.
padded = st.integers(MAX_FRAME - 40, MAX_FRAME + 40).map(
    lambda size: '{"event":"ping","data":{"pad":"' + "x" * max(size - 34, 0) + '"}}'
)
decoder_texts = (
    text_frames
    | surrogate_text
    | envelopes.map(lambda e: json.dumps(e, ensure_ascii=False))
    | st.binary(max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape"))
    | padded
)


@settings(max_examples=1000, deadline=None)
@given(text=st.one_of(st.none(), decoder_texts), raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_decoder_never_raises_and_returns_a_frame_or_an_error(text, raw):
    frame, parsed, error = decode(text, raw, MAX_FRAME)
    assert (frame is None) != (error is None)
    if frame is not None:
        assert isinstance(frame, Frame) and isinstance(frame.event, str) and isinstance(frame.data, dict)
        # An accepted frame holds valid Unicode only: anything echoed from it can be sent.
        encode(frame.event, frame.data, frame.id).encode("utf-8")
    else:
        assert error.errors and all(isinstance(v, list) for v in error.errors.values())
        # The error, with the id and event name the consumer echoes, can be sent.
        event = parsed.get("event") if isinstance(parsed, dict) else None
        reply = {"errors": error.errors, "event": event if isinstance(event, str) else None}
        encode("validation_error", reply, peek_id(parsed)).encode("utf-8")
    if text is not None and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert error is not None, "raw surrogates (invalid UTF-8) are refused"


@pytest.mark.django_db(transaction=True)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.one_of(text_frames, st.binary(max_size=100)), min_size=1, max_size=15))
def test_arbitrary_frames_never_close_the_connection(live_server_url, frames):
    async def scenario() -> None:
        client = await Client.connect(live_server_url, dev_token(unique("fuzz")))
        assert (await client.recv())["event"] == "connected"
        for frame in frames:
            await client.send_raw(frame)
        reply = await client.request("ping", id="fuzz-end", timeout=10)
        assert reply["event"] == "pong"
        for frame in client.backlog:
            assert frame["event"] in {
                "validation_error",
                "error",
                "pong",
                "subscribed",
                "unsubscribed",
                "credit_balance_updated",
            }, frame
            if frame["event"] == "error":
                assert frame["data"]["code"] in {"NOT_FOUND", "UNAUTHORIZED"}, frame
        await client.close()

    asyncio.run(scenario())


# Frames as a raw client sends them to daphne: text (valid UTF-8 or not),
# binary, between the frame limit and the transport maximum.
wire_frames = st.one_of(
    text_frames.map(lambda text: (rawws.TEXT, text.encode("utf-8", "surrogatepass"))),
    st.binary(max_size=200).map(lambda payload: (rawws.TEXT, payload)),
    st.binary(max_size=100).map(lambda payload: (rawws.BINARY, payload)),
    st.sampled_from([MAX_FRAME + 1, 200_000, MAX_MESSAGE]).map(
        lambda size: (rawws.TEXT, b'{"event":"ping","data":{"pad":"' + b"x" * (size - 34) + b'"}}')
    ),
)


@settings(max_examples=25, deadline=None)
@given(frames=st.lists(wire_frames, min_size=1, max_size=10), oversize=st.booleans())
def test_hostile_frames_over_daphne_get_validation_error_or_close_1009(daphne, frames, oversize):  # noqa: F811
    raw = rawws.RawSocket.connect(daphne.port, dev_token(unique("fuzzd")))
    try:
        raw.expect("connected")
        for opcode, payload in frames:
            raw.send(rawws.frame(opcode, payload))
        raw.send_text(json.dumps({"event": "ping", "id": "fuzz-end"}))
        while (reply := raw.recv_event())["event"] != "pong" or reply.get("id") != "fuzz-end":
            assert reply["event"] in {
                "validation_error",
                "error",
                "pong",
                "subscribed",
                "unsubscribed",
                "credit_balance_updated",
            }, reply
            if reply["event"] == "error":
                assert reply["data"]["code"] in {"NOT_FOUND", "UNAUTHORIZED"}, reply
        if oversize:
            # The header announces more than the maximum: the server closes
            # with 1009 and a reason without reading the rest.
            raw.send(bytes([0x81, 0x80 | 127]) + (MAX_MESSAGE + 1).to_bytes(8, "big") + b"mask" + b"x" * 4096)
            while (got := raw.recv_frame())[0] != rawws.CLOSE:
                pass
            assert int.from_bytes(got[1][:2], "big") == 1009 and b"exceeds" in got[1][2:], got
            raw.send(rawws.close_frame(1009))
    finally:
        raw.close()

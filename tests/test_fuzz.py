"""Fuzzing the frame decoder and the consumer with hypothesis."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.protocol import Frame, decode
from tests.wsclient import Client, dev_token, unique

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["ping", "subscribe", "unsubscribe", "nope", ""]) | st.text(max_size=20) | json_values,
        "data": json_values | st.dictionaries(st.sampled_from(["room", "x"]), json_values, max_size=3),
        "id": st.integers() | st.text(max_size=70) | json_values,
    },
)
text_frames = (
    st.text(max_size=300)
    | json_values.map(json.dumps)
    | envelopes.map(json.dumps)
    | st.just("[" * 5000 + "]" * 5000)
    | st.just('{"event": "ping", "data": ' + "[" * 100_000 + "]" * 100_000 + "}")
)


@settings(max_examples=1500, deadline=None)
@given(text=st.one_of(st.none(), text_frames), raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_decoder_never_raises_and_returns_a_frame_or_an_error(text, raw):
    frame, _, error = decode(text, raw, 65536)
    assert (frame is None) != (error is None)
    if frame is not None:
        assert isinstance(frame, Frame) and isinstance(frame.event, str) and isinstance(frame.data, dict)
    else:
        assert error.errors and all(isinstance(v, list) for v in error.errors.values())


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

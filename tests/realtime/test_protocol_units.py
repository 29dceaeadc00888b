"""Units of the protocol core that need no server: codec, redaction, registry."""

from __future__ import annotations

import json
import logging

import pytest

from realtime.logs import RedactSecrets, redact
from realtime.protocol import decode, encode
from realtime.registry import EventRegistry, registry
from tests.wsclient import dev_token


def test_redaction_removes_tokens_in_every_form():
    token = dev_token("someone")
    for text in (
        f"GET /ws?token={token}&applicationId=x",
        f"Authorization: Bearer {token}",
        f"failed to verify {token}",
    ):
        cleaned = redact(text)
        assert token not in cleaned and token.split(".")[2] not in cleaned, cleaned


def test_log_filter_redacts_formatted_messages_and_tracebacks():
    token = dev_token("someone")
    try:
        raise ValueError(f"bad token {token}")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "query was %s", (f"?token={token}",), sys.exc_info()
        )
    RedactSecrets().filter(record)
    assert token not in record.getMessage()
    assert token not in (record.exc_text or "")


def test_outbound_frames_carry_id_only_when_caused_by_a_request():
    assert json.loads(encode("pong", {"timestamp": 1}, "r1")) == {"event": "pong", "data": {"timestamp": 1}, "id": "r1"}
    assert "id" not in json.loads(encode("user_left_room", {"userId": "u"}))


def test_decoder_accepts_the_envelope_and_defaults_data():
    frame, _, error = decode('{"event": "ping", "id": 3}', None, 1000)
    assert error is None and frame is not None
    assert (frame.event, frame.data, frame.id) == ("ping", {}, 3)
    frame, _, error = decode('{"event": "ping", "data": null}', None, 1000)
    assert frame is not None and frame.data == {}


def test_registry_refuses_duplicate_event_names():
    local = EventRegistry()
    from realtime.payloads import EmptyPayload

    @local.on("x", EmptyPayload, summary="x")
    async def first(ctx, data):
        pass

    with pytest.raises(RuntimeError):

        @local.on("x", EmptyPayload, summary="x")
        async def second(ctx, data):
            pass


@pytest.mark.parametrize("name", sorted(registry.inbound_events))
def test_every_inbound_payload_rejects_unknown_fields(name):
    serializer = registry.inbound_events[name].serializer(data={"__unknown__": 1})
    assert not serializer.is_valid()
    assert "__unknown__" in serializer.errors


def test_plain_frames_encode_to_the_same_text_as_any_other():
    """``encode(plain=True)`` (orjson) writes what json writes: every code
    point but the surrogates, control characters and escapes, integers up
    to 64 bits; what orjson refuses (a larger integer, a lone surrogate)
    takes the usual way to the same text."""
    characters = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)
    pieces = [characters[start : start + 997] for start in range(0, len(characters), 997)]
    rows = [[piece, index, index % 2 == 0, None, -(2**63), 2**64 - 1, 2**53 + 1] for index, piece in enumerate(pieces)]
    data = {"queryId": 'q\u00e9"', "rows": rows, "schema": [{"name": "é", "type": "text"}]}
    for request_id in (None, "r1", 7):
        assert encode("query_response", data, request_id, plain=True) == encode("query_response", data, request_id)
    for refused in (2**64, -(2**63) - 1, "lone \ud800 surrogate"):
        frame = {"rows": [[refused]]}
        assert encode("e", frame, plain=True) == encode("e", frame)

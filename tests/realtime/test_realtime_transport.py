"""Which connections get a direct writer (realtime.transport): daphne's own
WebSocket send callable does, anything else keeps the ASGI send. The writing
itself is tested end to end under daphne (tests/system/test_end_to_end.py)."""

from __future__ import annotations

import functools

from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

from realtime.transport import DirectWriter, SharedFrame, direct_writer


def test_daphne_websocket_send_gets_a_direct_writer_and_other_sends_do_not():
    server = Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])
    protocol = WebSocketProtocol()
    writer = direct_writer(functools.partial(server.handle_reply, protocol))
    assert isinstance(writer, DirectWriter) and writer.protocol is protocol and writer.server is server

    async def asgi_send(message: dict) -> None:
        return None

    assert direct_writer(asgi_send) is None
    assert direct_writer(functools.partial(print, protocol)) is None  # not daphne's handle_reply
    assert direct_writer(functools.partial(server.handle_reply, object())) is None  # not a WebSocket


def test_a_shared_frame_is_one_unmasked_text_frame_built_once():
    frame = SharedFrame('{"event":"x","data":{"é":1}}')
    prepared = frame.prepared()
    assert frame.prepared() is prepared
    payload = frame.text.encode()
    # FIN + text opcode; no mask bit; 7-bit length; then the UTF-8 payload.
    assert prepared.payloadHybi == bytes([0x81, len(payload)]) + payload

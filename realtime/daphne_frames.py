"""The adapter to daphne's, autobahn's and Twisted's internals that writing
one frame to many sockets needs; nothing else in the project touches them
but its sibling ``realtime.daphne_buffers``, which reads and closes the same
sockets' buffers (its internals are listed here too).

Why it exists: ASGI lets an application write to a WebSocket only through
its ``send``, per socket, where daphne runs the middleware's wrappers and
autobahn encodes and frames the text again for every socket. Framing a
broadcast once (autobahn's ``PreparedMessage``) and writing its bytes
straight to each socket is what keeps fan-out cheap: the figures are in
docs/benchmarks.md (shared frames for fan-out; a live chart update to a
thousand subscribers). The same internals set each connection's inbound
limits (``harden``).

These are not public APIs and an upgrade of daphne, autobahn or Twisted
may remove them: ``missing_internals()`` names what this module relies on
that is gone, and tests/realtime/test_daphne_frames.py fails loudly with that list.
Outside daphne (uvicorn in the test suite) none of this is used: the
connection has no writer and the ordinary ASGI send is used.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import sys
import time
from typing import Any

from autobahn.exception import Disconnected
from autobahn.websocket.protocol import PreparedMessage

log = logging.getLogger(__name__)

__all__ = [
    "Disconnected",
    "harden",
    "is_open",
    "missing_internals",
    "prepare",
    "websocket_of",
    "write_prepared",
    "write_through",
]


def prepare(text: str) -> Any:
    """``text`` framed once as a server frame (not masked: RFC 6455 5.1)."""
    return PreparedMessage(text.encode(), False, False, False)


def frame_bytes(prepared: Any) -> int:
    return len(prepared.payloadHybi)


def websocket_of(send: Any) -> tuple[Any, Any] | None:
    """(server, protocol) when ``send`` is daphne's send callable for a
    WebSocket connection (``partial(Server.handle_reply, protocol)``), else
    None. daphne.server is imported by every daphne process before it
    serves (it installs Twisted's reactor, so this module must not import
    it): when it is not loaded, ``send`` is not daphne's."""
    server_module = sys.modules.get("daphne.server")
    ws_module = sys.modules.get("daphne.ws_protocol")
    if server_module is None or ws_module is None:
        return None
    if not isinstance(send, functools.partial) or len(send.args) != 1:
        return None
    server = getattr(send.func, "__self__", None)
    protocol = send.args[0]
    if getattr(send.func, "__name__", None) != "handle_reply" or not isinstance(server, server_module.Server):
        return None
    if not isinstance(protocol, ws_module.WebSocketProtocol):
        return None
    return server, protocol


def is_open(server: Any, protocol: Any) -> bool:
    """Whether frames may be written: open, and not disconnected for daphne."""
    if protocol.state != protocol.STATE_OPEN:
        return False
    details = server.connections.get(protocol)
    return details is not None and not details.get("disconnected")


def write_prepared(protocol: Any, prepared: Any) -> None:
    if getattr(protocol, "_perMessageCompress", True) is None and not getattr(protocol, "send_queue", True):
        # What sendPreparedMessage does without compression, minus the
        # arguments of a debug log line that autobahn formats on every
        # send whether or not it is logged.
        _write_now(protocol.transport, prepared.payloadHybi)
    else:
        protocol.sendPreparedMessage(prepared)


def write_through(protocol: Any) -> None:
    """Every write to the connection (autobahn's pings, pongs and close
    frames, daphne's ASGI sends) as ``_write_now`` writes shared frames:
    sent at once when nothing is buffered before it, instead of on a later
    turn of the event loop after registering the socket for writability and
    unregistering it again (two system calls and a loop turn per frame: with
    10,000 idle sockets, daphne's pings and the answers to the clients'
    pings are most of what the process does)."""
    transport = getattr(protocol, "transport", None)
    if transport is None or getattr(transport, "TLS", True) or "write" in vars(transport):
        return
    buffered_write = transport.write

    def write(data: bytes) -> None:
        _write_now(transport, data, buffered_write)

    transport.write = write


def _write_now(transport: Any, data: bytes, buffered_write: Any = None) -> None:
    """Twisted's ``write`` only buffers: the bytes leave on a later turn of
    the event loop, after registering the socket for writability and
    unregistering it again, which for a thousand sockets costs about as much
    as the sends. When nothing is buffered before ``data`` on a plain TCP
    connection, send it now through the transport's own ``writeSomeData``
    (which handles EWOULDBLOCK and a lost connection) and buffer only what
    the socket did not take; otherwise, or if the connection is lost, leave
    it all to ``write``."""
    if (
        getattr(transport, "TLS", True)
        or not transport.connected
        or transport.disconnecting
        or getattr(transport, "_writeDisconnected", True)
        or transport.dataBuffer
        or getattr(transport, "_tempDataBuffer", True)
    ):
        (buffered_write or transport.write)(data)
        return
    sent = transport.writeSomeData(data)
    if not isinstance(sent, int):  # the connection is lost: let write() see to it
        (buffered_write or transport.write)(data)
    elif sent < len(data):
        (buffered_write or transport.write)(data[sent:])


def harden(protocol: Any, max_message_bytes: int, close_grace: float) -> None:
    """Inbound limits and failure handling of one daphne WebSocket
    connection (autobahn reads these options per connection; they are set
    here, before the handshake is accepted, so they apply to every frame).

    - ``failByDrop`` off: a connection failed by the server (message too
      big, protocol violation) gets a close frame with a code and a reason
      (RFC 6455 7.1.7) instead of a TCP reset.
    - A message (a frame, or the frames of a fragmented message together)
      over ``max_message_bytes`` fails the connection with 1009 as soon as
      its header announces the size; the payload is discarded unread. The
      limit is on what the client sends only: autobahn's own message limit
      would also refuse to send a larger message to the client.
    - Text frames are not UTF-8 validated by autobahn (which would fail the
      connection with 1007); one that is not valid UTF-8 is handed to the
      application with its invalid bytes as surrogate escapes, and the frame
      decoder answers it with ``validation_error``.
    - A client's WebSocket ping defers daphne's keepalive ping as a message
      does (see below)."""
    protocol.failByDrop = False
    # Checked below, with the same reason for one frame or many.
    protocol.maxFramePayloadSize = 0
    protocol.maxMessagePayloadSize = 0
    protocol.utf8validateIncoming = False
    begin = protocol.onMessageFrameBegin
    on_message = protocol.onMessage

    def on_message_frame_begin(length: int) -> None:
        begin(length)
        total = protocol.message_data_total_length
        if total > max_message_bytes and not protocol.failedByMe:
            reason = f"message of {total} bytes exceeds the {max_message_bytes}-byte limit"
            log.info("closing the connection of %s with 1009: %s", getattr(protocol, "peer", "?"), reason)
            protocol.wasMaxMessagePayloadSizeExceeded = True
            protocol.closeHandshakeTimeout = close_grace
            protocol._fail_connection(protocol.CLOSE_STATUS_CODE_MESSAGE_TOO_BIG, reason)

    def on_text_or_binary(payload: bytes, is_binary: bool) -> None:
        try:
            on_message(payload, is_binary)
        except UnicodeDecodeError:
            # daphne decodes text strictly and raised before queueing it.
            protocol.application_queue.put_nowait(
                {"type": "websocket.receive", "text": payload.decode("utf-8", "surrogateescape")}
            )

    protocol.onMessageFrameBegin = on_message_frame_begin
    protocol.onMessage = on_text_or_binary

    # daphne pings a connection that has sent no message for its ping
    # interval; a client's own ping shows as well that it is there (and
    # its pong keeps the path open), so it defers the server's ping too.
    on_ping = protocol.onPing

    def on_client_ping(payload: bytes) -> None:
        protocol.last_ping = time.time()
        on_ping(payload)

    protocol.onPing = on_client_ping


class _Lazy:
    """``func(*args)`` as text, made only when formatted."""

    __slots__ = ("args", "func")

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __str__(self) -> str:
        return str(self.func(*self.args))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return str(self)


def _lazily(func: Any) -> Any:
    def lazy(*args: Any) -> _Lazy:
        return _Lazy(func, *args)

    lazy.__wrapped__ = func  # type: ignore[attr-defined]
    return lazy


# Formatters autobahn calls for the arguments of its debug log lines, by
# module: its configuration pretty-printed once per connection, coloured
# names per frame read or written.
LOG_FORMATTERS: dict[str, tuple[str, ...]] = {
    "autobahn.websocket.protocol": ("pformat", "hltype", "hlval"),
    "autobahn.twisted.websocket": ("hltype", "hlval"),
}


def lazy_debug_arguments() -> None:
    """autobahn formats the arguments of its debug log lines before its
    logger (a no-op unless debug logging is on) drops them: on every
    connection and every frame, about a tenth of the event loop's time
    while clients connect. Its formatters are replaced, in the modules
    that call them, by ones that make the same text only when a line is
    written. Idempotent; call it once daphne is loaded (it imports them)."""
    for module_name, names in LOG_FORMATTERS.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name in names:
            current = getattr(module, name, None)
            if current is not None and not hasattr(current, "__wrapped__"):
                setattr(module, name, _lazily(current))


# What this module uses, by owner: "module:Class" -> attributes. Methods and
# class constants are looked up on the class; attributes the class sets on
# its instances are looked for as ``self.<name>`` in the class's module.
INTERNALS: dict[str, tuple[str, ...]] = {
    "daphne.server:Server": ("handle_reply", "connections"),
    "daphne.ws_protocol:WebSocketProtocol": (
        "application_queue",
        "onMessage",
        "onPing",
        "last_ping",
        "transport",
        "muted",
        "client_addr",
    ),
    "autobahn.websocket.protocol:WebSocketProtocol": (
        "STATE_OPEN",
        "state",
        "sendPreparedMessage",
        "onMessageFrameBegin",
        "_fail_connection",
        "failByDrop",
        "maxFramePayloadSize",
        "maxMessagePayloadSize",
        "utf8validateIncoming",
        "message_data_total_length",
        "failedByMe",
        "wasMaxMessagePayloadSizeExceeded",
        "CLOSE_STATUS_CODE_MESSAGE_TOO_BIG",
        "_perMessageCompress",
        "send_queue",
        "STATE_CLOSING",
        "STATE_CLOSED",
        "sendClose",
        "dropConnection",
        "closeHandshakeTimeout",
    ),
    "autobahn.websocket.protocol:PreparedMessage": ("payloadHybi",),
    "twisted.internet.tcp:Connection": (
        "TLS",
        "connected",
        "disconnecting",
        "_writeDisconnected",
        "dataBuffer",
        "_tempDataBuffer",
        "writeSomeData",
        "write",
        "offset",
        "_tempDataLen",
        "doWrite",
        "fileno",
    ),
}


def missing_internals() -> list[str]:
    """``module:Class.attribute`` for each internal used here that the
    installed daphne, autobahn or Twisted no longer has (call it in a
    process where daphne.server may be imported)."""
    missing = []
    for owner, names in INTERNALS.items():
        module_name, _, class_name = owner.partition(":")
        try:
            module = importlib.import_module(module_name)
            cls = getattr(module, class_name)
        except (ImportError, AttributeError):
            missing.append(owner)
            continue
        sources = [_source(base) for base in cls.__mro__[:-1]]
        for name in names:
            if hasattr(cls, name) or any(f"self.{name} =" in source or f"self.{name}:" in source for source in sources):
                continue
            missing.append(f"{owner}.{name}")
    for module_name, names in LOG_FORMATTERS.items():
        module = importlib.import_module(module_name)
        missing.extend(f"{module_name}.{name}" for name in names if not callable(getattr(module, name, None)))
    if not _frames_as_expected():
        missing.append("autobahn.websocket.protocol:PreparedMessage(payload, isBinary, applyMask, doNotCompress)")
    return missing


def _source(cls: type) -> str:
    module = inspect.getmodule(cls)
    try:
        return inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):
        return ""


def _frames_as_expected() -> bool:
    try:
        return bytes(prepare("hi").payloadHybi) == b"\x81\x02hi"
    except Exception:  # noqa: BLE001 - a daphne upgrade may fail here in any way
        return False

"""The adapter to the buffers of one daphne WebSocket connection: what
``realtime.backpressure`` measures, flushes and closes. Like
``realtime.daphne_frames`` (whose ``INTERNALS`` list covers what is used
here too), it touches daphne's, autobahn's and Twisted's internals, and
nothing else in the project does.

Under daphne every frame for a WebSocket ends up in the connection's Twisted
transport (``dataBuffer`` + ``_tempDataBuffer``) or, for chopped or
synchronised writes, in autobahn's ``send_queue``; then in the kernel's send
buffer.
"""

from __future__ import annotations

import logging
import struct
import sys
from typing import Any

log = logging.getLogger(__name__)

# ioctl: unsent bytes of a TCP socket's send queue (linux/sockios.h).
SIOCOUTQNSD: int | None = 0x894B if sys.platform.startswith("linux") else None
if SIOCOUTQNSD is not None:
    import fcntl
# Attempts to hand buffered bytes to the kernel before judging a client.
FLUSH_ATTEMPTS = 4


def _descriptor(transport: Any) -> Any:
    """The Twisted file descriptor that holds the bytes (under TLS, the TCP
    transport below the TLS protocol)."""
    for _ in range(4):
        if transport is None or hasattr(transport, "dataBuffer"):
            return transport
        transport = getattr(transport, "transport", None)
    return None


def _held(fd: Any) -> int:
    return int(len(fd.dataBuffer) - fd.offset + fd._tempDataLen)


def kernel_unsent(fd: Any) -> int:
    """Bytes the kernel holds for the socket and has not sent (Linux
    ``SIOCOUTQNSD``; 0 where unavailable). A client that stops reading
    closes its TCP window, and the kernel's send buffer (autotuned up to
    ``net.ipv4.tcp_wmem``'s maximum, 4 MiB by default) fills before
    anything is left to the process."""
    if SIOCOUTQNSD is None or fd is None:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd.fileno(), SIOCOUTQNSD, b"\0\0\0\0"))[0])
    except (OSError, ValueError, AttributeError):
        return 0


def buffered_bytes(protocol: Any) -> int:
    """Bytes written to ``protocol`` that have not left this machine: held
    by autobahn, by the transport, or unsent in the kernel."""
    total = 0
    queue = getattr(protocol, "send_queue", None)
    if queue:
        total += sum(len(data) for data, _ in queue)
    transport = getattr(protocol, "transport", None)
    tls_pending = getattr(transport, "_appSendBuffer", None)
    if tls_pending:
        total += sum(len(data) for data in tls_pending)
    fd = _descriptor(transport)
    if fd is not None:
        total += _held(fd)
        if getattr(fd, "connected", False):
            total += kernel_unsent(fd)
    return total


def flush(protocol: Any) -> None:
    """Hand what the transport buffers to the kernel now, as far as it takes
    it (what the reactor does when the socket is writable; Twisted only
    writes on a later turn of the event loop)."""
    fd = _descriptor(getattr(protocol, "transport", None))
    if fd is None or not getattr(fd, "connected", False) or getattr(fd, "disconnecting", True):
        return
    for _ in range(FLUSH_ATTEMPTS):
        before = _held(fd)
        if not before:
            return
        try:
            result = fd.doWrite()
        except Exception:  # noqa: BLE001 - the reactor sees to a broken socket
            return
        if result is not None:  # connection lost: the reactor will notice
            return
        if _held(fd) >= before:
            return


def is_open(protocol: Any) -> bool:
    return bool(protocol.state == protocol.STATE_OPEN)


def is_closing(protocol: Any) -> bool:
    """Closing or closed: autobahn would refuse a frame."""
    return protocol.state in (protocol.STATE_CLOSING, protocol.STATE_CLOSED)


def close_within(protocol: Any, code: int, reason: str, grace: float) -> None:
    """Tell the application at once that the connection is gone (it leaves
    its rooms and stops sending), queue the close frame after what is
    buffered, and abort the TCP connection if the client has not completed
    the close within ``grace`` seconds (which frees its buffers)."""
    queue = getattr(protocol, "application_queue", None)
    if queue is not None and not protocol.muted:
        queue.put_nowait({"type": "websocket.disconnect", "code": code})
        protocol.muted = True
    protocol.closeHandshakeTimeout = grace
    try:
        protocol.sendClose(code=code, reason=reason)
    except Exception:
        log.exception("could not send the close frame (%s); dropping the connection", code)
        protocol.dropConnection(abort=True)


def peer(protocol: Any) -> Any:
    return getattr(protocol, "client_addr", None)

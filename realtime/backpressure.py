"""Bounded outbound buffers: a client that does not read is conflated, then
closed, and never makes the server's memory grow without bound.

Under daphne every frame for a WebSocket ends up in the connection's
buffers (Twisted's transport, autobahn's queue, the kernel), which grow
without bound when the peer stops reading. ``Outbound`` measures them
through the adapter ``realtime.daphne_buffers`` (the bytes the kernel has
not taken yet, and how many frames those bytes belong to) whenever a frame
could take them over a mark (see below), through both ways a frame leaves: the connection's ASGI send
(``realtime.transport.guarded_send``) and the prepared-frame writer
(``realtime.transport``).

- Over the stall mark (a sixteenth of either limit), the connection is
  *stalled*: room events for it wait in the process's fan-out
  (``realtime.fanout``), in order, without being framed or written, and
  ``drained`` looks every ``DRAIN_CHECK_SECONDS`` whether the client has
  read enough to take them. What waits there counts against the limits
  with what is buffered, so a client that never reads is closed as soon
  as before, at a fraction of the cost of writing to it.
- Over the low watermark (a quarter of either limit), live chart updates
  (``realtime.local`` rooms with positions) are not written: the connection
  keeps, per room, the latest update of each of the last
  ``LIVE_PENDING_BUCKETS`` candles and writes them, oldest candle first,
  when the buffer has drained below the watermark. An older candle is never
  written after a newer one.
- Over ``LEDGERCORE_SEND_BUFFER_BYTES`` or ``LEDGERCORE_SEND_BUFFER_FRAMES``,
  the connection is closed with ``CLOSE_SLOW_CONSUMER`` (4008, reason
  ``SLOW_CONSUMER_REASON``): the close frame is queued after what is already
  buffered, nothing more is written, and if the client has not read up to it
  and answered within ``LEDGERCORE_SLOW_CLOSE_GRACE_SECONDS`` the TCP
  connection is aborted, which frees its buffers. Either way daphne then
  delivers ``websocket.disconnect`` and the consumer leaves its rooms.

Before deciding that a client lags, the transport is given a chance to
write what it holds (twisted only writes on a later turn of the event loop,
so a burst of frames to a healthy client is briefly "buffered" too): only
bytes the kernel refuses count.

Measuring costs a system call (the kernel's unsent bytes), as much as a
third of writing a small frame. Buffers only shrink but for what is written
to them, so the last measurement plus every byte written since is an upper
bound on what is buffered now, and the frames written since the last
measurement an upper bound on their count: while that bound is under a mark,
the connection is under it too and nothing is measured. A healthy
connection is measured about once per stall mark's worth of frames (256 by
default) instead of once per frame; every decision is the one a measurement
would give. (The bound leaves out the control frames autobahn writes on its
own, a few bytes each, every ping interval.)

Other ASGI servers (uvicorn in the test suite) hide their buffers; there the
ASGI send is left as it is (see docs/PROTOCOL.md, "Slow consumers").
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from realtime import daphne_buffers, daphne_frames, metrics

log = logging.getLogger(__name__)

CLOSE_SLOW_CONSUMER = 4008
SLOW_CONSUMER_REASON = "slow consumer: send buffer exceeded"
# Live chart candles kept per room for a lagging connection.
LIVE_PENDING_BUCKETS = 4
# How often a connection holding conflated updates looks whether it drained.
DRAIN_CHECK_SECONDS = 0.05
# Bytes of a server frame's header, as counted (2 to 10 in fact).
FRAME_HEADER = 4
MAX_FRAME_HEADER = 10


@dataclass(frozen=True)
class Limits:
    bytes: int
    frames: int
    grace: float

    @property
    def low_bytes(self) -> int:
        return self.bytes // 4

    @property
    def low_frames(self) -> int:
        return self.frames // 4

    @property
    def stall_bytes(self) -> int:
        return self.bytes // 16

    @property
    def stall_frames(self) -> int:
        return self.frames // 16

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            settings.LEDGERCORE_SEND_BUFFER_BYTES,
            settings.LEDGERCORE_SEND_BUFFER_FRAMES,
            settings.LEDGERCORE_SLOW_CLOSE_GRACE_SECONDS,
        )


class Outbound:
    """The outbound buffer policy of one daphne WebSocket connection."""

    __slots__ = (
        "_bound",
        "_drain",
        "_sized",
        "_sizes",
        "closing",
        "departed",
        "limits",
        "pending",
        "protocol",
        "stalled",
    )

    def __init__(self, protocol: Any, limits: Limits | None = None) -> None:
        self.protocol = protocol
        self.limits = limits or Limits.from_settings()
        # Bytes each written frame added to the buffer, oldest first; the
        # oldest leave the buffer first.
        self._sizes: deque[int] = deque()
        self._sized = 0
        self.pending: dict[str, dict[int | None, Any]] = {}
        self._drain: asyncio.TimerHandle | None = None
        self.closing = False
        # Over the stall mark: room events wait upstream (``drained``).
        self.stalled = False
        # Frames that have left the buffer so far (the client reads).
        self.departed = 0
        # At least the bytes buffered: the last measurement plus what was
        # written since.
        self._bound = 0

    # --- measuring ----------------------------------------------------------

    def measure(self) -> tuple[int, int]:
        """(bytes, frames) buffered: frames with at least one byte not yet
        taken by the kernel."""
        total = daphne_buffers.buffered_bytes(self.protocol)
        self._bound = total
        sizes = self._sizes
        while sizes and self._sized - sizes[0] >= total:
            self._sized -= sizes.popleft()
            self.departed += 1
        return total, len(sizes)

    def buffered(self) -> int:
        """Bytes buffered now; nothing is measured when nothing was written
        since a measurement that found none (an idle connection)."""
        return self.measure()[0] if self._bound else 0

    def _measure_over(self, max_bytes: int, max_frames: int) -> tuple[int, int]:
        """``measure()``, after handing the transport's bytes to the kernel
        when the first look is over ``max_bytes`` or ``max_frames``."""
        size, frames = self.measure()
        if size <= max_bytes and frames <= max_frames:
            return size, frames
        daphne_buffers.flush(self.protocol)
        return self.measure()

    def _surely_under(self, max_bytes: int, max_frames: int) -> bool:
        """Whether the bound alone shows the buffer within ``max_bytes`` and
        ``max_frames`` (nothing measured)."""
        return self._bound <= max_bytes and len(self._sizes) <= max_frames

    def _over(self, max_bytes: int, max_frames: int) -> bool:
        if self._surely_under(max_bytes, max_frames):
            return False
        size, frames = self._measure_over(max_bytes, max_frames)
        return size > max_bytes or frames > max_frames

    def lagging(self) -> bool:
        return self._over(self.limits.low_bytes, self.limits.low_frames)

    # --- writing ------------------------------------------------------------

    def admit(self) -> bool:
        """May a frame be written now? Over a limit the connection is closed
        (and False returned); False too while it closes. Over the stall
        mark the connection is marked stalled (the frame is still written)."""
        if self.closing:
            return False
        if daphne_buffers.is_closing(self.protocol):
            return False
        limits = self.limits
        if not self.stalled and self._surely_under(limits.stall_bytes, limits.stall_frames):
            return True
        size, frames = self._measure_over(limits.stall_bytes, limits.stall_frames)
        if size > limits.bytes or frames > limits.frames:
            self.close_slow()
            return False
        if size > limits.stall_bytes or frames > limits.stall_frames:
            if not self.stalled:
                self.stalled = True
                metrics.STALLS.inc()
        else:
            self.stalled = False
        return True

    async def drained(self, held: Callable[[], tuple[int, int]]) -> bool:
        """Wait until a stalled connection has drained below the stall mark,
        or reads (frames left its buffer since the last look, as they do
        for a client that reads a large query result slower than it comes)
        (True); count what waits for it upstream (``held()``: frames,
        bytes), close it as a slow consumer when that and what is buffered
        exceed a limit, and return False then or when it closes meanwhile."""
        limits = self.limits
        departed = self.departed
        while True:
            if self.closing or not daphne_buffers.is_open(self.protocol):
                return False
            daphne_buffers.flush(self.protocol)
            size, frames = self.measure()
            held_frames, held_bytes = held()
            if size + held_bytes > limits.bytes or frames + held_frames > limits.frames:
                self.close_slow()
                return False
            reads = self.departed != departed
            if reads or (size <= limits.stall_bytes and frames <= limits.stall_frames):
                self.stalled = False
                return True
            departed = self.departed
            await asyncio.sleep(DRAIN_CHECK_SECONDS)

    def write(self, write: Callable[[], Any], size: int) -> bool:
        """Run ``write`` (which writes one frame of ``size`` bytes) if the
        buffer allows it."""
        if not self.admit():
            return False
        write()
        self.account(size)
        return True

    def account(self, size: int, most: int | None = None) -> None:
        """Count a frame of ``size`` bytes just written (``most``: at most
        that many, when ``size`` is an estimate)."""
        self._sizes.append(size)
        self._sized += size
        self._bound += size if most is None else most

    def sent(self, message: dict[str, Any]) -> None:
        """Count a ``websocket.send`` the ASGI send wrote (``realtime.transport.guarded_send``)."""
        # The frame's size: its payload (text is ASCII JSON but for
        # escapes-free non-ASCII, where this undercounts) and a header; the
        # bound takes the most it can be.
        payload = message.get("text") or message.get("bytes") or b""
        most = len(payload) if isinstance(payload, bytes) or payload.isascii() else 4 * len(payload)
        self.account(len(payload) + FRAME_HEADER, most + MAX_FRAME_HEADER)

    def released(self) -> None:
        """The connection has ended: if it held much (a quarter of a limit or
        more), give the freed memory back to the operating system soon."""
        if self._sized >= self.limits.low_bytes or len(self._sizes) >= self.limits.low_frames:
            _trim_later(1.0)

    # --- conflation ---------------------------------------------------------

    def offer_live(self, room: str, position: int | None, frame: Any, write: Callable[[Any], Any]) -> bool:
        """Write a live update now, or keep it (the latest per candle) while
        the connection lags. False when the connection is closing."""
        if self.closing:
            return False
        held = self.pending.get(room)
        if held is None and not self.lagging():
            return self.write(functools.partial(write, frame), frame_size(frame))
        if held is None:
            held = self.pending[room] = {}
        held.pop(position, None)
        held[position] = frame  # the latest update of that candle wins
        if len(held) > LIVE_PENDING_BUCKETS:
            del held[min(held, key=_order)]
        self._schedule(write)
        return True

    def _schedule(self, write: Callable[[Any], Any]) -> None:
        if self._drain is None:
            loop = asyncio.get_running_loop()
            self._drain = loop.call_later(DRAIN_CHECK_SECONDS, self._drain_check, write)

    def _drain_check(self, write: Callable[[Any], Any]) -> None:
        self._drain = None
        if self.closing or not daphne_buffers.is_open(self.protocol):
            self.pending.clear()
            return
        if self.lagging():
            self._schedule(write)
            return
        pending, self.pending = self.pending, {}
        for held in pending.values():
            for position in sorted(held, key=_order):
                frame = held[position]
                if not self.write(functools.partial(write, frame), frame_size(frame)):
                    return

    # --- closing ------------------------------------------------------------

    def close_slow(self) -> None:
        """Close as a slow consumer: the close frame follows what is
        buffered; the connection is aborted if the client has not completed
        the close within the grace period."""
        if self.closing:
            return
        self.closing = True
        self.pending.clear()
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None
        size, frames = self.measure()
        log.warning(
            "closing slow consumer %s (%s): %d bytes in %d frames not read (limits %d bytes, %d frames)",
            daphne_buffers.peer(self.protocol),
            CLOSE_SLOW_CONSUMER,
            size,
            frames,
            self.limits.bytes,
            self.limits.frames,
        )
        self._sizes.clear()
        self._sized = 0
        metrics.SLOW_CLOSED.inc()
        if not daphne_buffers.is_open(self.protocol):
            return
        # The application hears of the disconnection now, not when the TCP
        # connection ends: it leaves its rooms (presence, group membership)
        # at once and stops receiving what it could not send anyway.
        _trim_later(self.limits.grace + 1.0)
        daphne_buffers.close_within(self.protocol, CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON, self.limits.grace)


_trim: dict[str, Any] = {"handle": None, "last": 0.0}
TRIM_INTERVAL = 5.0


def _trim_later(delay: float) -> None:
    """Give the memory freed by closed slow consumers (and connections that
    ended with much buffered) back to the operating system once they are
    gone: glibc keeps freed heap pages for reuse, so
    the process's RSS would otherwise stay at its peak. At most once per
    TRIM_INTERVAL; a no-op where ``malloc_trim`` does not exist."""
    if _trim["handle"] is not None:
        return
    loop = asyncio.get_running_loop()
    wait = max(delay, _trim["last"] + TRIM_INTERVAL - loop.time())
    _trim["handle"] = loop.call_later(wait, _malloc_trim, loop)


def _malloc_trim(loop: asyncio.AbstractEventLoop) -> None:
    _trim["handle"] = None
    _trim["last"] = loop.time()
    # The server's collector thresholds (LEDGERCORE_GC_THRESHOLDS) leave
    # old cyclic garbage, such as the ended connections' consumers and what
    # they hold, for a long time: collect it first.
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def frame_size(frame: Any) -> int:
    """Bytes of a ``realtime.transport.SharedFrame`` on the wire."""
    return daphne_frames.frame_bytes(frame.prepared())


def _order(position: int | None) -> float:
    return -math.inf if position is None else position

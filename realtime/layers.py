"""The embedded stack's channel layer.

channels' InMemoryChannelLayer scans every channel queue and every group
membership for expiry on each ``receive`` and ``group_send``; a broadcast to a
room of n connections then costs O(n²) (measured: p99 above 500 ms for 1,000
subscribers). This subclass keeps the stock layer's semantics but runs that
housekeeping at most once per second, and sends to group members without one
task and one deep copy per member. A channel's messages wait in a
``realtime.mailbox.Mailbox`` instead of an ``asyncio.Queue`` (every
connection's channel has one while it waits, nearly always empty).

It is also safe to send to from another event loop or thread of the same
process (a sync admin view, a service called from a worker thread): such
sends are handed to the loop that serves the connections. A process that
serves no connection (a management command) has no one to deliver to:
sends raise NoLocalReceivers, so that callers with a durable outbox leave
the work to the server process's relay instead of believing it done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from copy import deepcopy
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

from realtime.mailbox import Mailbox

log = logging.getLogger(__name__)


DROP_LOG_INTERVAL = 10.0


class NoLocalReceivers(RuntimeError):
    """This process serves no connection; an in-memory send reaches no one."""


class EmbeddedChannelLayer(InMemoryChannelLayer):  # type: ignore[misc]  # channels is untyped
    clean_interval = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_clean = 0.0
        self._drops: dict[str, tuple[int, float]] = {}
        self._owner: asyncio.AbstractEventLoop | None = None

    def serve_here(self) -> None:
        """The running loop serves this process's connections (called when
        the server starts, before its first connection)."""
        if self._owner is None:
            self._owner = asyncio.get_running_loop()

    def _mailbox(self, channel: str) -> Mailbox:
        box: Mailbox | None = self.channels.get(channel)
        if box is None:
            box = self.channels[channel] = Mailbox(self.get_capacity(channel))
        return box

    async def receive(self, channel: str) -> dict[str, Any]:
        """As the stock layer's: the first message of ``channel``."""
        if self._owner is None:
            self._owner = asyncio.get_running_loop()
        self.require_valid_channel_name(channel)
        self._clean_expired()
        box = self._mailbox(channel)
        try:
            _, message = await box.get()
        finally:
            if box.empty() and self.channels.get(channel) is box:
                del self.channels[channel]
        assert isinstance(message, dict)
        return message

    async def group_add(self, group: str, channel: str) -> None:
        if self._owner is None:
            self._owner = asyncio.get_running_loop()
        await super().group_add(group, channel)

    def _foreign(self) -> asyncio.AbstractEventLoop | None:
        """The owner loop if the caller runs on another one."""
        if self._owner is None:
            raise NoLocalReceivers("no connection is served by this process")
        if self._owner.is_closed():
            raise NoLocalReceivers("the loop that served connections is closed")
        return self._owner if asyncio.get_running_loop() is not self._owner else None

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        owner = self._owner
        if owner is not None and not owner.is_closed() and owner is not asyncio.get_running_loop():
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._send(channel, message), owner))
            return
        await self._send(channel, message)

    async def _send(self, channel: str, message: dict[str, Any]) -> None:
        """As the stock layer's send."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        try:
            self._mailbox(channel).put_nowait((time.time() + self.expiry, deepcopy(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    def _clean_expired(self) -> None:
        """Expired messages and group memberships are removed, as by the
        stock layer, but a channel whose messages expired stays in its
        groups. The stock layer takes such a channel for dead and removes it
        from every group; here the receiver is in this process and alive but
        behind (the process's fan-out channel during a burst of room events
        to thousands of sockets), and leaving its groups would silence its
        rooms for good: every later event, to no one, without an error.
        What expired is logged; room streams see the gap at their next
        event and fill it from the room's history."""
        now = time.monotonic()
        if now < self._next_clean:
            return
        self._next_clean = now + self.clean_interval
        wall = time.time()
        for channel, box in list(self.channels.items()):
            expired = 0
            while not box.empty() and box._queue[0][0] < wall:
                box.get_nowait()
                expired += 1
            if expired:
                self._dropped(channel, f"expired after {self.expiry} s", expired)
                if box.empty() and self.channels.get(channel) is box:
                    del self.channels[channel]
        timeout = int(wall) - self.group_expiry
        for members in self.groups.values():
            for channel, joined in list(members.items()):
                if joined and joined < timeout:
                    members.pop(channel, None)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        owner = self._foreign()
        if owner is not None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._group_send(group, message), owner))
            return
        await self._group_send(group, message)

    async def _group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        # One copy for the whole group (the stock layer copies per member):
        # receivers treat messages as read-only, as they must on any layer.
        shared = deepcopy(message)
        deadline = time.time() + self.expiry
        for channel in list(self.groups.get(group, {})):
            try:
                self._mailbox(channel).put_nowait((deadline, shared))
            except asyncio.QueueFull:
                # Same policy as the stock layers: a consumer that stopped
                # reading loses group messages rather than blocking the room.
                self._dropped(channel, f"full, to group {group}")

    def _dropped(self, channel: str, why: str, dropped: int = 1) -> None:
        """Log drops at most once per channel per DROP_LOG_INTERVAL (with
        how many): one line per message would flood the log (and the CPU)
        exactly when the process is overloaded."""
        now = time.monotonic()
        count, since = self._drops.get(channel, (0, 0.0))
        count += dropped
        if now - since < DROP_LOG_INTERVAL:
            self._drops[channel] = (count, since)
            return
        log.warning("channel %s is behind; dropped %d message(s): %s", channel, count, why)
        self._drops[channel] = (0, now)
        if len(self._drops) > 10_000:
            self._drops = {c: v for c, v in self._drops.items() if now - v[1] < DROP_LOG_INTERVAL}

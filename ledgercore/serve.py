"""The server entry point: daphne, draining gracefully on SIGTERM/SIGINT.

    python -m ledgercore.serve [daphne options] [--drain-seconds N] [APPLICATION]
    python manage.py serve ...            (the same)

Every option of the ``daphne`` command works the same way (``-b``/``-p``,
``-u`` unix socket, ``--fd``, ``-e`` endpoints, ``--proxy-headers``,
timeouts, ``--access-log``, ``-v``, ...); the application defaults to
``ledgercore.asgi:application``.

On the first SIGTERM or SIGINT the process stops listening and drains for
up to ``--drain-seconds`` (default ``LEDGERCORE_DRAIN_SECONDS``): its
connections are closed with 1001 and a reason, as soon as they have
nothing in flight and the rest at the deadline, where what still runs is
stopped and refunded (``realtime.lifecycle``); then its presence is
released, and it exits 0. A second signal ends the drain window at once.
A watchdog ends the process with exit code 1, saying so, if it is still
there 2 s after the drain window.
"""

# daphne.server installs Twisted's asyncio reactor: it must be imported
# before anything imports twisted.internet.reactor.
from daphne.server import Server  # isort: skip

import asyncio
import functools
import logging
import os
import signal
import sys
import threading
import time
from types import ModuleType
from typing import Any

from channels.layers import get_channel_layer
from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketProtocol
from django.apps import apps
from django.conf import settings
from twisted.internet import defer, reactor

from ledgercore import http
from realtime import daphne_frames, ormthread
from realtime.mailbox import Mailbox

logger = logging.getLogger("ledgercore.serve")

DEFAULT_APPLICATION = "ledgercore.asgi:application"
CLOSE_GOING_AWAY = 1001
CLOSE_REASON = "server shutting down; reconnect"
# After the drain window: what the process may still take to exit, and how
# that is shared: stopping and refunding what still runs, close handshakes
# (realtime.lifecycle); connections of other applications; the rest (presence,
# background tasks, the interpreter's exit).
EXIT_MARGIN_SECONDS = 2.0
LIFECYCLE_AFTER_SECONDS = 1.3
CLOSE_AFTER_SECONDS = 1.5
# Close codes a server may put on the wire (RFC 6455 7.4; 1004-1006 and 1015
# are reserved). autobahn's own check admits only 1000 and 3000-4999.
_SENDABLE_CLOSE_CODES = {1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)}
_MAX_REASON_BYTES = 123


def _django_ready() -> bool:
    """Whether the served application is a Django one that set Django up
    (daphne loads the application after this module starts)."""
    return apps.ready


def _lifecycle() -> ModuleType | None:
    """``realtime.lifecycle`` when the served application set Django up.
    Imported here: it imports models, which cannot be imported before
    Django is set up, and daphne loads the application after this module."""
    if not _django_ready():
        return None
    from realtime import lifecycle  # noqa: PLC0415 - see the docstring

    return lifecycle


class GracefulServer(Server):  # type: ignore[misc]  # daphne is untyped
    """daphne's Server with its own signal handling and a graceful drain."""

    def __init__(self, *args: Any, drain_seconds: float | None = None, **kwargs: Any) -> None:
        kwargs["signal_handlers"] = False
        super().__init__(*args, **kwargs)
        self.drain_seconds = drain_seconds
        self.ports: list[Any] = []
        self.shutting_down = False
        self._forced: asyncio.Event | None = None

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Mailbox | None:
        """daphne's, with the connection's input queue a Mailbox (an empty
        ``asyncio.Queue`` per connection is ~3.5 KiB; see realtime.mailbox):
        the application instance started for ``protocol``, and its queue."""
        assert "application_instance" not in self.connections[protocol]
        input_queue = Mailbox()
        scope.setdefault("asgi", {"version": "3.0"})
        instance = self.application(
            scope=scope, receive=input_queue.get, send=functools.partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(instance)
        return input_queue

    # --- running -----------------------------------------------------------

    def run(self) -> None:
        reactor.callWhenRunning(self._install_signal_handlers)
        super().run()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.shutdown, signum)

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        if isinstance(protocol, WebSocketProtocol) and not self.connections.get(protocol, {}).get("disconnected"):
            kind = message.get("type")
            if kind in ("websocket.send", "websocket.close") and protocol.state in (
                protocol.STATE_CLOSING,
                protocol.STATE_CLOSED,
            ):
                # The close handshake has begun: nothing more can be sent
                # (daphne drops it likewise once the socket is gone).
                return
            code = message.get("code") or 1000
            if kind == "websocket.close" and protocol.state == protocol.STATE_OPEN and code in _SENDABLE_CLOSE_CODES:
                # daphne drops the reason, and autobahn's sendClose refuses
                # 1001 and 1011.
                reason = str(message.get("reason") or "").encode()[:_MAX_REASON_BYTES]
                reason = reason.decode(errors="ignore").encode()
                protocol.sendCloseFrame(code=code, reasonUtf8=reason or None)
                return
        await super().handle_reply(protocol, message)

    def kill_all_applications(self) -> Any:
        # As daphne's, without failing on a connection that has no
        # application instance (any more).
        pending = []
        for details in self.connections.values():
            instance = details.get("application_instance")
            if instance is not None and not instance.done():
                instance.cancel()
                pending.append(instance)
        if pending:
            logger.info("cancelled %d application instances still running", len(pending))
        deferred = defer.Deferred.fromFuture(asyncio.gather(*pending, return_exceptions=True))
        deferred.addErrback(lambda _: None)
        return deferred

    # --- shutting down -------------------------------------------------------

    def shutdown(self, signum: int = signal.SIGTERM) -> None:
        name = signal.Signals(signum).name
        if self.shutting_down:
            logger.warning("%s again: ending the drain window now", name)
            if self._forced is not None:
                self._forced.set()
            lifecycle = _lifecycle()
            if lifecycle is not None:
                lifecycle.force()
            return
        self.shutting_down = True
        drain = self._drain_seconds()
        watchdog = threading.Timer(drain + EXIT_MARGIN_SECONDS - 0.1, self._watchdog, args=(drain,))
        watchdog.daemon = True
        watchdog.start()
        self._forced = asyncio.Event()
        task = asyncio.ensure_future(self._shutdown(name, drain))
        task.add_done_callback(self._after_shutdown)

    def _drain_seconds(self) -> float:
        if self.drain_seconds is not None:
            return max(self.drain_seconds, 0.0)
        if _django_ready():
            return float(settings.LEDGERCORE_DRAIN_SECONDS)
        return 10.0

    async def _shutdown(self, name: str, drain: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + drain
        logger.info(
            "%s: no longer accepting; draining %d connections for up to %g s",
            name,
            len(self._websockets()),
            drain,
        )
        await self._stop_listening()
        lifecycle = _lifecycle()
        if lifecycle is not None:
            report = await lifecycle.drain(max(deadline - loop.time(), 0.0), after=LIFECYCLE_AFTER_SECONDS)
            logger.info(
                "drained %d connections in %.2f s: %d closed idle, %d at the deadline, %d requests and %d jobs "
                "stopped and refunded, %d not disconnected",
                report.connections,
                report.seconds,
                report.closed_idle,
                report.closed_at_deadline,
                report.stopped_requests,
                report.stopped_work,
                report.not_disconnected,
            )
        assert self._forced is not None
        if self._forced.is_set():
            deadline = min(deadline, loop.time())
        await self._close_the_rest(deadline, deadline + CLOSE_AFTER_SECONDS)
        if lifecycle is not None:
            try:
                await asyncio.wait_for(lifecycle.release_presence(), 0.3)
            except TimeoutError:
                logger.warning("releasing presence timed out; it expires with the heartbeat")
        await self._stop_services()
        logger.info("%s: stopped %.2f s after the signal", name, loop.time() - started)

    def _after_shutdown(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("the shutdown failed", exc_info=task.exception())
        if reactor.running:
            reactor.stop()  # type: ignore[misc]  # twisted's reactor module is typed as a module

    async def _stop_listening(self) -> None:
        stopping = [defer.maybeDeferred(port.stopListening) for port in self.ports]
        self.ports = []
        for deferred in stopping:
            try:
                await deferred.asFuture(asyncio.get_running_loop())
            except Exception:
                logger.warning("could not stop listening on a port", exc_info=True)

    def _websockets(self) -> list[WebSocketProtocol]:
        return [
            p
            for p, details in self.connections.items()
            if isinstance(p, WebSocketProtocol) and not details.get("disconnected")
        ]

    def _websocket_applications(self) -> int:
        return sum(
            1
            for p, d in self.connections.items()
            if isinstance(p, WebSocketProtocol)
            and d.get("application_instance") is not None
            and not d["application_instance"].done()
        )

    async def _close_the_rest(self, deadline: float, end: float) -> None:
        """Connections the application did not close itself (an application
        other than ours, HTTP requests): HTTP requests get until the
        deadline, then every WebSocket gets 1001; then the applications
        get until ``end`` to handle the disconnects."""
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            running = [
                d
                for p, d in self.connections.items()
                if not isinstance(p, WebSocketProtocol) and d.get("application_instance") is not None
            ]
            if not running and not self._websockets():
                break
            await asyncio.sleep(0.05)
        for protocol in self._websockets():
            if protocol.state == protocol.STATE_OPEN:
                protocol.sendCloseFrame(code=CLOSE_GOING_AWAY, reasonUtf8=CLOSE_REASON.encode())
        # Polled: Twisted's connection table signals nothing when it empties.
        while (self._websockets() or self._websocket_applications()) and loop.time() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for protocol in self._websockets():
            protocol.dropConnection(abort=True)

    async def _stop_services(self) -> None:
        """End what still runs on the loop (background loops of the apps)
        and close the channel layer's connections."""
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
        # Application instances are daphne's to cancel (before the reactor stops).
        instances = {d.get("application_instance") for d in self.connections.values()}
        others = [task for task in others if task not in instances]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=0.2)
        if _django_ready():
            close = getattr(get_channel_layer(), "close_pools", None)
            if close is not None:
                try:
                    await asyncio.wait_for(close(), 0.2)
                except Exception:
                    logger.debug("closing the channel layer failed", exc_info=True)

    def _watchdog(self, drain: float) -> None:
        logger.error(
            "still running %g s after the drain window of %g s; exiting now (threads: %s)",
            EXIT_MARGIN_SECONDS,
            drain,
            ", ".join(t.name for t in threading.enumerate() if t is not threading.current_thread()),
        )
        logging.shutdown()
        os._exit(1)


class ServeCommandLine(CommandLineInterface):  # type: ignore[misc]  # daphne is untyped
    description = "LedgerCore server (daphne) that drains gracefully on SIGTERM/SIGINT"

    def __init__(self) -> None:
        super().__init__()
        self.parser.prog = "python -m ledgercore.serve"
        for action in self.parser._actions:
            if action.dest == "application":
                action.nargs = "?"
                action.required = False
                action.default = DEFAULT_APPLICATION
                action.help = f"{action.help} (default {DEFAULT_APPLICATION})"
        self.parser.add_argument(
            "--drain-seconds",
            type=float,
            default=None,
            help="On SIGTERM/SIGINT, how long requests in flight may take to finish before they are stopped "
            "(default: LEDGERCORE_DRAIN_SECONDS, 10)",
        )

    def run(self, args: list[str]) -> None:
        parsed = self.parser.parse_args(args)
        self.server_class = functools.partial(GracefulServer, drain_seconds=parsed.drain_seconds)
        super().run(args)


def main(argv: list[str] | None = None) -> None:
    started = time.monotonic()
    ormthread.enable()
    # autobahn's debug-log arguments are made only when a line is logged.
    daphne_frames.lazy_debug_arguments()
    try:
        ServeCommandLine().run(sys.argv[1:] if argv is None else argv)
    finally:
        ormthread.close_connections()
        http.close_request_threads()
    logger.debug("served for %.1f s", time.monotonic() - started)


if __name__ == "__main__":
    main()

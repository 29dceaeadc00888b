"""Helpers of the Socket.IO tests: a python-socketio AsyncClient that keeps
what it receives, and the server process they talk to."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import socketio

from credits.demo import DEMO_PRICES
from devtools.servers import DaphneProcess
from tests.stacks import stack_env

# About a second of work on either database (64M rows counted), so that
# query_progress (after 200 ms) is sent.
PROGRESS_SQL = "SELECT count(*) FROM (SELECT 1 AS o FROM trades LIMIT 8000) a, (SELECT 1 AS o FROM trades LIMIT 8000) b"
QUERY_PRICE = DEMO_PRICES["query"]  # the demo application's price (seed_demo)


@contextmanager
def socketio_server(tmp_path: Path, scaled: bool, **extra: str) -> Any:
    """The project served by daphne in a subprocess, demo data loaded (its
    queries priced)."""
    with stack_env(tmp_path, scaled, **extra) as env:
        server = DaphneProcess(env, tmp_path / "daphne.log").start()
        try:
            yield server, env
        finally:
            server.stop()


class Recorder(socketio.AsyncClient):  # type: ignore[misc]  # python-socketio is untyped
    """Records every event (name, args) and the CONNECT answer's pid; the
    last string argument of an event is its recovery offset."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(reconnection=False, **kwargs)
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self.pid: str | None = None
        self.offset: str | None = None
        self.refusal: Any = None
        self._arrived = asyncio.Event()
        self.on("*", self._record)
        self.on("connect_error", self._refused)

    async def _handle_connect(self, namespace: str, data: Any) -> None:
        if isinstance(data, dict):
            self.pid = data.get("pid")
        await super()._handle_connect(namespace, data)

    async def _record(self, event: str, *args: Any) -> None:
        if args and isinstance(args[-1], str):
            self.offset = args[-1]
        self.events.append((event, args))
        self._arrived.set()

    async def _refused(self, data: Any) -> None:
        self.refusal = data

    def named(self, event: str) -> list[dict[str, Any]]:
        return [args[0] for name, args in self.events if name == event]

    async def wait_for(self, event: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        """The first ``event`` (whose data matches ``match``), waiting for it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for data in self.named(event):
                if all(data.get(k) == v for k, v in match.items()):
                    return data
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {event} {match} within {timeout}s; got {[e for e, _ in self.events]}")
            self._arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

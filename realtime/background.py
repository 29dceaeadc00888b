"""Every task a server process runs in the background, started from one place.

Apps register theirs at ``AppConfig.ready()``::

    background.register("credit outbox relay", relay.start_relay)

A starter is called on the server's event loop and must be idempotent: it
starts its task (or thread) if it is not running, and does nothing if it is.
``start()`` calls every starter; ``RealtimeConsumer.connect`` calls it
first thing, which starts them with the process's first connection and
restarts a task that ended. Not at server start: the credit outbox relay
re-sends at once what a crashed process committed and did not push, and it
must reach a client that is there to receive it (test_end_to_end's
``test_movement_committed_just_before_a_crash_is_pushed_once_the_server_is_back``).
The process heartbeat itself starts when the ASGI application is loaded
(``ledgercore.asgi``).

Registered (see each app's ``apps.py``): the process heartbeat and repairs
(``realtime.processes``), the presence heartbeat and sweeper
(``realtime.presence``), the credit outbox relay (``credits.relay``), the
market demo feed (``marketdata.demo``, when ``LEDGERCORE_MARKET_DEMO_FEED``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

Starter = Callable[[], None]

_starters: dict[str, Starter] = {}


def register(name: str, starter: Starter) -> None:
    """Declare a background task of this process (replaces one of that name)."""
    _starters[name] = starter


def registered() -> list[str]:
    return list(_starters)


def start() -> None:
    """Start every registered task that is not running (on the event loop)."""
    for name, starter in _starters.items():
        try:
            starter()
        except Exception:
            log.exception("could not start %s", name)

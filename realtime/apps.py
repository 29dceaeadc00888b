from typing import Any

from channels.layers import get_channel_layer
from django.apps import AppConfig
from django.conf import settings
from django.db.backends.signals import connection_created
from django.utils.module_loading import autodiscover_modules

from realtime import background, ormthread


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime protocol"

    def ready(self) -> None:
        # Every app declares its events in its own handlers.py; importing them
        # fills the one registry.
        autodiscover_modules("handlers")
        connection_created.connect(_bound_statements, dispatch_uid="realtime-statement-timeout")
        connection_created.connect(ormthread.keep_orm_connection, dispatch_uid="realtime-orm-thread-connection")
        ormthread.find_orm_thread()
        # Imported here: they import models, which cannot be imported before
        # the app registry is ready (this module is).
        from realtime import departures, presence, processes, sampling  # noqa: PLC0415

        background.register("channel layer", _serve_channel_layer)
        background.register("process heartbeat", processes.start)
        background.register("presence heartbeat", lambda: presence.store().start(departures.on_departures))
        background.register("metrics sampling", sampling.start)


def _bound_statements(sender: object, connection: Any, **kwargs: object) -> None:
    """In a server process no statement waits on PostgreSQL longer than
    LEDGERCORE_DB_STATEMENT_TIMEOUT_MS (management commands are not bound)."""
    # Imported here: realtime.processes imports models, which cannot be
    # imported before the app registry is ready (this module is).
    from realtime import processes  # noqa: PLC0415

    timeout = settings.LEDGERCORE_DB_STATEMENT_TIMEOUT_MS
    if processes.serving() and timeout and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [str(timeout)])


def _serve_channel_layer() -> None:
    """The loop that starts the background tasks serves the connections: the
    embedded layer delivers there what other loops and threads send (the
    relay may send before the first connection has joined a group)."""
    serve_here = getattr(get_channel_layer(), "serve_here", None)
    if serve_here is not None:
        serve_here()

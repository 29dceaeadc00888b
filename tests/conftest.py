"""Fixtures: a real ASGI server on a real socket, development tokens, stacks.

The same suite runs on the embedded stack (SQLite, in-memory layer) and on
the scaled stack (PostgreSQL, Redis) depending on DATABASE_URL/REDIS_URL;
scripts/test.sh runs both.

Layout: one package per app, tests/<app>/ for realtime, accounts, credits,
compliance, marketdata, queryengine and chat, holding the tests of that app's
behaviour (its events over a real WebSocket included). tests/realtime also
holds the core's cross-process behaviour: presence churn, Redis outages and
Sentinel, missed-event recovery across processes, slow consumers, fuzzing and
hostile frames. tests/system holds what spans the whole project: the server as
a subprocess end to end, graceful shutdown, charging under faults and SIGKILL,
and the project wiring (HTTP endpoints, settings validation, management
commands). Shared helpers stay at the top: wsclient (WebSocket client, dev
tokens), rawws (raw frames), redisfaults (Redis fault tests), stacks (the
stack under test, server-process environments) and factories.

Named actors (each with a unique user id, made by tests/factories.py):
``alice``, a user with her personal application; ``colleague``, a plain
member of alice's application; ``outsider``, a user of another application
only; ``staff``, a staff member. ``staff_client`` is a Django test client
logged in to the admin as a superuser.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db.backends.signals import connection_created

from accounts.models import User
from credits.events import flush_dispatcher
from devtools.servers import free_port
from tests.factories import AdminFactory, MembershipFactory, UserFactory
from tests.stacks import scaled_stack
from tests.wsclient import DEV_SECRET, unique


def _allow_ledger_purge(sender: object, connection: object, **kwargs: object) -> None:
    """The suite empties its database between tests; on PostgreSQL the ledger's
    triggers let a DELETE/TRUNCATE through only in a session that says so.
    Tests of the triggers turn it off for their own transaction."""
    if getattr(connection, "vendor", "") == "postgresql":
        with connection.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute("SET ledgercore.ledger_purge = 'on'")


connection_created.connect(_allow_ledger_purge, dispatch_uid="tests-allow-ledger-purge")


def _flush_by_delete(sender: object, connection: Any, **kwargs: object) -> None:
    """Tests that commit (``transaction=True``) empty every table afterwards.
    On PostgreSQL Django does it with one TRUNCATE of all tables, which
    recreates each table's files: ~1-2 s per test for tables that hold a
    handful of rows. DELETE in one transaction (foreign keys checked at its
    end) empties them in milliseconds. Sequences are not reset either way."""
    if getattr(connection, "vendor", "") != "postgresql" or getattr(connection.ops, "_flush_by_delete", False):
        return
    truncate = connection.ops.sql_flush

    def sql_flush(style: Any, tables: Any, *, reset_sequences: bool = False, allow_cascade: bool = False) -> list[str]:
        if reset_sequences or not tables:
            return list(truncate(style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade))
        quote = connection.ops.quote_name
        return ["SET CONSTRAINTS ALL DEFERRED", *(f"DELETE FROM {quote(table)}" for table in tables)]

    connection.ops.sql_flush = sql_flush
    connection.ops._flush_by_delete = True


connection_created.connect(_flush_by_delete, dispatch_uid="tests-flush-by-delete")


def pytest_report_header(config: pytest.Config) -> str:
    db = django_settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    layer = "redis" if django_settings.REDIS_URL else "in-memory"
    return f"LedgerCore stack: database={db}, channel layer/presence/throttles={layer}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if scaled_stack():
        return
    skip = pytest.mark.skip(reason="needs the scaled stack (DATABASE_URL=postgres://..., REDIS_URL=redis://...)")
    for item in items:
        if "redis_stack" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def dev_jwt_secret(settings: pytest.FixtureRequest) -> None:
    settings.LEDGERCORE_DEV_JWT_SECRET = DEV_SECRET  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def settle_credit_events(django_db_blocker: Any) -> Iterator[None]:
    """Credit events of a test are pushed by a background thread after
    commit: let it finish (and close its connection) before the test's
    database goes away."""
    yield
    with django_db_blocker.unblock():
        # Writers commit many entries together (credits.combining) faster
        # than one thread pushes their events: thousands can be queued.
        assert flush_dispatcher(30.0), "credit event dispatcher did not settle"


@pytest.fixture
def alice(db: None) -> User:
    """A user with her personal application (her default, which she owns)."""
    return UserFactory.create(username=unique("alice"))


@pytest.fixture
def colleague(db: None, alice: User) -> User:
    """A plain member of alice's application (with a personal one of his own)."""
    user = UserFactory.create(username=unique("colleague"))
    MembershipFactory.create(application=alice.default_application, user=user)
    return user


@pytest.fixture
def outsider(db: None) -> User:
    """A user of another tenant: member of his personal application only."""
    return UserFactory.create(username=unique("outsider"))


@pytest.fixture
def staff(db: None) -> User:
    """A staff member (is_staff), not a superuser."""
    return UserFactory.create(username=unique("staff"), staff=True)


@pytest.fixture
def staff_client(db: None, client: Any) -> Any:
    """Django's test client logged in to the admin as a superuser."""
    client.force_login(AdminFactory.create())
    return client


@pytest.fixture(scope="session")
def live_server_url() -> Iterator[str]:
    """The project's ASGI application served by uvicorn on a real socket in a
    background thread (same process, so tests share its settings and test
    database). End-to-end tests use daphne in a subprocess instead."""
    import uvicorn

    from realtime import processes

    # No heartbeat thread in the test process: pytest-django opens and
    # blocks the test database around each test (the fault tests run
    # server subprocesses that heartbeat).
    processes.disable()
    from ledgercore.asgi import application

    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="asgi-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test ASGI server did not start")
        time.sleep(0.02)
    yield f"ws://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def clean_redis_prefix() -> Iterator[None]:
    yield
    if not django_settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(django_settings.REDIS_URL)
    keys = list(client.scan_iter(f"{django_settings.LEDGERCORE_REDIS_PREFIX}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])

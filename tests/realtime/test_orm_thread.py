"""The ORM thread of a server process (ledgercore.serve) keeps its database connection between
calls (realtime.ormthread); other threads keep Django's CONN_MAX_AGE."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from django.db import connection, connections

from realtime import ormthread

pytestmark = pytest.mark.django_db(transaction=True)


def _raw_connection() -> Any:
    """The DB-API connection this thread's ORM uses (opened if needed)."""
    connection.ensure_connection()
    return connection.connection


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a process started by ledgercore.serve (not the test process)."""
    monkeypatch.setattr(ormthread, "_enabled", True)


@pytest.fixture(autouse=True)
def close_orm_thread_connections() -> Any:
    yield
    # On the ORM thread itself (async_to_sync would run it on this one),
    # before the test database is emptied or dropped.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


async def test_the_orm_thread_reuses_one_connection_across_calls(serving, settings):
    settings.LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS = 300
    assert await database_sync_to_async(ormthread.on_orm_thread)()
    first = await database_sync_to_async(_raw_connection)()
    second = await database_sync_to_async(_raw_connection)()
    assert first is second


async def test_with_the_setting_at_zero_each_call_opens_its_own(serving, settings):
    settings.LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS = 0
    await database_sync_to_async(connections.close_all)()
    first = await database_sync_to_async(_raw_connection)()
    second = await database_sync_to_async(_raw_connection)()
    assert first is not second


async def test_outside_a_serving_process_the_orm_thread_keeps_djangos_rule(settings):
    settings.LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS = 300
    await database_sync_to_async(connections.close_all)()
    first = await database_sync_to_async(_raw_connection)()
    second = await database_sync_to_async(_raw_connection)()
    assert first is not second


def test_other_threads_keep_conn_max_age(serving, settings):
    settings.LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS = 300
    seen: dict[str, Any] = {}

    def work() -> None:
        seen["orm thread"] = ormthread.on_orm_thread()
        connection.ensure_connection()
        seen["close_at"] = connection.close_at
        connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen["orm thread"] is False
    # CONN_MAX_AGE (0 by default): obsolete at the end of its first call.
    max_age = connection.settings_dict["CONN_MAX_AGE"]
    assert seen["close_at"] is not None and seen["close_at"] <= time.monotonic() + max_age


async def test_a_kept_connection_postgresql_terminated_is_replaced_at_the_next_call(serving, settings):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL ends the session of a kept connection")
    settings.LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS = 300

    def backend_pid() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return int(cursor.fetchone()[0])

    kept = await database_sync_to_async(backend_pid)()
    assert await database_sync_to_async(backend_pid)() == kept

    def terminate() -> None:  # as a PostgreSQL restart would, from another session
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [kept])
            assert cursor.fetchone()[0] is True
            # Until the session has ended, as after a restart.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [kept])
                if cursor.fetchone()[0] == 0:
                    break
                time.sleep(0.01)
        connection.close()

    await asyncio.to_thread(terminate)
    # The health check (CONN_HEALTH_CHECKS) finds it broken: a new session
    # answers, and the call does not fail.
    replaced = await database_sync_to_async(backend_pid)()
    assert replaced != kept


async def test_a_kept_connection_with_a_quiet_idle_session_is_reused_without_a_select_1(serving, settings):
    if connection.vendor != "postgresql":
        pytest.skip("the health check runs on PostgreSQL")
    settings.LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS = 300

    def reused_quietly() -> tuple[int, str, int]:
        """In one call on the ORM thread, so that no other call of the
        process (the credits relay) runs a statement in between: a marked
        statement, then what the start of the next call does (stale
        connections closed, then the health check as a cursor is opened),
        then the session's last statement, read from a second session."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), 'quiet-check'")
            pid = int(cursor.fetchone()[0])
        connection.close_if_unusable_or_obsolete()
        connection.cursor().close()
        with psycopg.connect(**connection.get_connection_params()) as other:
            row = other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
        assert row is not None, "the session is gone"
        return pid, str(row[0]), connection.connection.info.backend_pid

    kept, statement, after = await database_sync_to_async(reused_quietly)()
    # The health check found the session idle and its socket quiet: no
    # SELECT 1 ran after the marked statement, and the session is kept.
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]
    assert "quiet-check" in statement
    assert after == kept

    # A session in a transaction is checked as before.
    def begin_and_leave() -> None:
        connection.connection.execute("BEGIN")

    await database_sync_to_async(begin_and_leave)()
    assert ormthread.quiet(await database_sync_to_async(lambda: connection.connection)()) is False

"""The query engine on the real database: tenant isolation, limits, time
limit, cancellation, concurrency, the database's own defences, history
and the catalog endpoint.

Queries run on the executor's own connections, so these tests commit their
data (transactional test cases)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import timezone as timezone_of
from decimal import Decimal
from typing import Any, ClassVar
from uuid import uuid4

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as accounts
from accounts.models import Application, Membership
from credits import services as credits
from credits.models import LedgerEntry
from queryengine import config, errors, executor, outbox, services, values
from queryengine.catalog import catalog
from queryengine.compiler import CompiledQuery
from queryengine.errors import QueryError
from queryengine.models import QueryLimits, QueryRecord
from tests.factories import funded
from tests.wsclient import unique

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = credits.Actor.system()
on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's own defences")
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's own defences")
# What each database answers to SQL past the compiler it must refuse.
SQLITE_REFUSALS = (errors.UNAUTHORIZED, errors.INTERNAL)
POSTGRESQL_REFUSALS = (errors.UNAUTHORIZED, errors.VALIDATION_FAILED)


def funded_user(prefix: str = "analyst", grants: int = 2) -> tuple[Any, str]:
    return funded(unique(prefix), *(10 + index for index in range(grants)))


class Recorder:
    """Collects the callbacks of one query, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self.started = threading.Event()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        def record(name: str) -> Callable[..., None]:
            def call(*args: Any) -> None:
                self.events.append((name, args))
                if name == "started":
                    self.started.set()

            return call

        return {f"on_{name}": record(name) for name in ("started", "progress", "chunk", "completed")}

    def rows(self) -> list[list[Any]]:
        return [row for name, args in self.events if name == "chunk" for row in args[0]]

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def run(
    user: Any, app: str, sql: str, params: Any = None, recorder: Recorder | None = None, **kwargs: Any
) -> tuple[services.QueryOutcome, Recorder]:
    recorder = recorder or Recorder()
    callbacks: dict[str, Any] = recorder.callbacks()
    outcome = services.run_query(user_pk=user.pk, application_id=app, sql=sql, params=params, **callbacks, **kwargs)
    return outcome, recorder


def failure(user: Any, app: str, sql: str, params: Any = None, **kwargs: Any) -> services.QueryFailed:
    with pytest.raises(services.QueryFailed) as caught:
        run(user, app, sql, params, **kwargs)
    return caught.value


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            result["value"] = target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, result


SLOW_SQL = (
    "SELECT count(*) FROM credit_entries a, credit_entries b, credit_entries c, credit_entries d, "
    "credit_entries e, credit_entries f"
)


def slow_user() -> tuple[Any, str]:
    # 30 entries: a six-way cross join is 729 million rows, far past any limit here.
    return funded_user("slow", grants=30)


class TestTenantIsolation:
    def test_a_user_sees_only_their_own_entries_in_the_bound_application(self):
        alice, alice_app = funded_user("alice", grants=3)
        bob, _bob_app = funded_user("bob", grants=2)
        shared = Application.objects.create(name="shared")
        accounts.add_member(shared, alice, Membership.Role.MEMBER)
        accounts.add_member(shared, bob, Membership.Role.MEMBER)
        credits.grant_credits(alice.pk, shared.id, 500, reason="shared", actor=SYSTEM)
        credits.grant_credits(bob.pk, shared.id, 700, reason="shared", actor=SYSTEM)

        _, seen = run(alice, alice_app, "SELECT transaction_id, application_id, amount FROM credit_entries")
        expected = set(
            LedgerEntry.objects.filter(account__user=alice, account__application_id=alice_app).values_list(
                "pk", flat=True
            )
        )
        assert {row[0] for row in seen.rows()} == expected and len(expected) == 3
        assert {row[1] for row in seen.rows()} == {alice_app}

        _, seen = run(alice, shared.id, "SELECT amount FROM credit_entries WHERE amount > 0 OR 1 = 1")
        assert [row[0] for row in seen.rows()] == [500]
        _, seen = run(bob, shared.id, "SELECT sum(amount) FROM credit_entries")
        assert seen.rows() == [[700]]

    @pytest.mark.parametrize(
        ("sql", "count"),
        [
            ("SELECT count(*) FROM credit_entries a JOIN credit_entries b ON true", 4),
            (
                (
                    "SELECT count(*) FROM (SELECT amount FROM credit_entries UNION ALL SELECT amount FROM "
                    "credit_entries) u"
                ),
                4,
            ),
            ("WITH credit_entries AS (SELECT * FROM credit_entries) SELECT count(*) FROM credit_entries", 2),
            ("SELECT (SELECT count(*) FROM credit_entries) * (SELECT count(*) FROM credit_entries)", 4),
            (
                (
                    "SELECT count(*) FROM credit_entries WHERE transaction_id IN (SELECT transaction_id FROM "
                    "credit_entries)"
                ),
                2,
            ),
        ],
    )
    def test_joins_unions_ctes_and_subqueries_see_only_own_rows(self, sql, count):
        user, app = funded_user("joiner", grants=2)
        funded_user("neighbour", grants=5)
        _, seen = run(user, app, sql)
        assert seen.rows() == [[count]]

    def test_query_history_lists_only_the_callers_queries(self):
        alice, app = funded_user("historian", grants=1)
        bob, bob_app = funded_user("other", grants=1)
        run(bob, bob_app, "SELECT 1")
        run(alice, app, "SELECT 2")
        with pytest.raises(services.QueryFailed):
            run(alice, app, "SELECT nope FROM credit_entries")
        _, seen = run(alice, app, "SELECT sql, status, error_code FROM query_history ORDER BY created_at")
        assert [row[:2] for row in seen.rows()] == [
            ["SELECT 2", "completed"],
            ["SELECT nope FROM credit_entries", "failed"],
            ["SELECT sql, status, error_code FROM query_history ORDER BY created_at", "running"],
        ]

    def test_timestamps_are_epoch_milliseconds(self):
        user, app = funded_user("clock", grants=1)
        entry = LedgerEntry.objects.get(account__user=user)
        _, seen = run(user, app, "SELECT created_at, date_trunc('day', created_at) FROM credit_entries")
        created, day = seen.rows()[0]
        assert abs(created - entry.created_at.timestamp() * 1000) < 1
        assert day % 86_400_000 == 0 and 0 <= created - day < 86_400_000


class TestStreamingAndLimits:
    def test_rows_stream_in_chunks_after_started_and_before_completed(self, settings):
        settings.LEDGERCORE_QUERY_CHUNK_ROWS = 2
        user, app = funded_user("streamer", grants=5)
        outcome, seen = run(user, app, "SELECT sequence FROM credit_entries ORDER BY sequence")
        names = [name for name in seen.names() if name != "progress"]
        assert names[0] == "started" and names[-1] == "completed"
        chunks = [args for name, args in seen.events if name == "chunk"]
        assert [len(rows) for rows, _ in chunks] == [2, 2, 1]
        assert chunks[0][1] == [{"name": "sequence", "type": "integer"}]
        assert seen.rows() == [[1], [2], [3], [4], [5]]
        duration_ms, total, truncated = seen.events[-1][1]
        assert (total, truncated) == (5, False) and duration_ms == outcome.duration_ms
        record = QueryRecord.objects.get(pk=outcome.query_id)
        assert (record.status, record.rows_returned, record.truncated) == ("completed", 5, False)
        assert record.compiled_sql and record.started_at and record.finished_at

    def test_rows_past_max_rows_are_cut_and_reported(self):
        user, app = funded_user("greedy", grants=5)
        QueryLimits.objects.create(application_id=app, max_rows=3)
        outcome, seen = run(user, app, "SELECT amount FROM credit_entries LIMIT 100")
        assert len(seen.rows()) == 3 and outcome.truncated
        assert seen.events[-1] == ("completed", (outcome.duration_ms, 3, True))
        assert QueryRecord.objects.get(pk=outcome.query_id).truncated

    def test_a_default_limit_applies_when_none_is_given(self):
        user, app = funded_user("lazy", grants=5)
        QueryLimits.objects.create(application_id=app, default_limit=2)
        outcome, seen = run(user, app, "SELECT amount FROM credit_entries")
        assert len(seen.rows()) == 2 and outcome.truncated
        outcome, seen = run(user, app, "SELECT amount FROM credit_entries LIMIT 4")
        assert len(seen.rows()) == 4 and not outcome.truncated

    def test_positional_and_named_params_are_bound(self):
        user, app = funded_user("binder", grants=3)
        _, seen = run(user, app, "SELECT amount FROM credit_entries WHERE amount > ? ORDER BY amount", [10])
        assert seen.rows() == [[11], [12]]
        _, seen = run(user, app, "SELECT count(*) FROM credit_entries WHERE reason = :r", {"r": "grant 0"})
        assert seen.rows() == [[1]]

    def test_a_refused_query_is_started_then_failed_and_recorded(self):
        user, app = funded_user("rebel", grants=1)
        recorder = Recorder()
        error = failure(user, app, "DELETE FROM credit_entries", recorder=recorder)
        assert error.code == errors.VALIDATION_FAILED and error.query_id
        assert recorder.names() == ["started"] and recorder.events[0][1] == (error.query_id, 0)
        record = QueryRecord.objects.get(pk=error.query_id)
        assert (record.status, record.error_code) == ("failed", errors.VALIDATION_FAILED)
        assert LedgerEntry.objects.filter(account__user=user).count() == 1

    def test_database_errors_of_the_query_are_validation_failures(self):
        user, app = funded_user("typo", grants=1)
        error = failure(user, app, "SELECT abs(-9223372036854775807 - 1) FROM credit_entries")
        assert error.code == errors.VALIDATION_FAILED
        assert "credits_" not in error.message


class TestTimeLimitsAndCancellation:
    def test_a_slow_query_stops_at_its_time_limit(self):
        user, app = slow_user()
        QueryLimits.objects.create(application_id=app, time_limit_ms=300)
        began = time.monotonic()
        error = failure(user, app, SLOW_SQL)
        assert error.code == errors.TIMEOUT
        assert time.monotonic() - began < 3
        assert QueryRecord.objects.get(pk=error.query_id).status == "timeout"

    def test_cancel_stops_a_running_query_within_a_second(self):
        user, app = slow_user()
        recorder = Recorder()
        cancel = executor.CancelHandle()
        thread, result = in_thread(lambda: run(user, app, SLOW_SQL, recorder=recorder, cancel=cancel))
        assert recorder.started.wait(10)
        time.sleep(0.2)
        asked = time.monotonic()
        cancel.cancel()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - asked < 1
        error = result["error"]
        assert isinstance(error, services.QueryFailed) and error.code == errors.CANCELLED
        assert QueryRecord.objects.get(pk=error.query_id).status == "cancelled"

    def test_cancel_query_by_id_only_for_its_owner(self):
        user, app = slow_user()
        intruder, _ = funded_user("intruder", grants=1)
        recorder = Recorder()
        thread, result = in_thread(lambda: run(user, app, SLOW_SQL, recorder=recorder))
        assert recorder.started.wait(10)
        query_id = recorder.events[0][1][0]
        assert not services.cancel_query(query_id, user_pk=intruder.pk)
        assert services.cancel_query(query_id, user_pk=user.pk)
        thread.join(5)
        assert result["error"].code == errors.CANCELLED
        assert not services.cancel_query(query_id, user_pk=user.pk)

    def test_progress_is_reported_while_a_long_query_runs(self):
        user, app = slow_user()
        QueryLimits.objects.create(application_id=app, time_limit_ms=1000)
        recorder = Recorder()
        with pytest.raises(services.QueryFailed):
            run(user, app, SLOW_SQL, recorder=recorder)
        progress = [args for name, args in recorder.events if name == "progress"]
        assert progress and len(progress) <= 5
        pcts = [pct for _, pct in progress if pct is not None]
        assert pcts == sorted(pcts)


class TestConcurrency:
    def test_a_user_may_run_only_max_concurrent_queries(self):
        user, app = slow_user()
        QueryLimits.objects.create(application_id=app, max_concurrent=1, time_limit_ms=5000)
        recorder = Recorder()
        cancel = executor.CancelHandle()
        thread, result = in_thread(lambda: run(user, app, SLOW_SQL, recorder=recorder, cancel=cancel))
        try:
            assert recorder.started.wait(10)
            error = failure(user, app, "SELECT 1")
            assert error.code == errors.RATE_LIMITED and error.retry_after == 1 and error.query_id is None
        finally:
            cancel.cancel()
            thread.join(5)
        assert result["error"].code == errors.CANCELLED
        outcome, _ = run(user, app, "SELECT 1")
        assert outcome.total_rows == 1

    @on_postgresql
    def test_refused_queries_leave_no_query_connection_behind(self):
        user, app = slow_user()
        QueryLimits.objects.create(application_id=app, max_concurrent=1, time_limit_ms=5000)
        role = services.database_target().pg_role
        recorder = Recorder()
        cancel = executor.CancelHandle()
        thread, _ = in_thread(lambda: run(user, app, SLOW_SQL, recorder=recorder, cancel=cancel))
        try:
            assert recorder.started.wait(10)
            for _ in range(3):
                assert failure(user, app, "SELECT count(*) FROM credit_entries").code == errors.RATE_LIMITED
            # A closed connection's backend leaves pg_stat_activity a moment later.
            deadline = time.monotonic() + 5
            while True:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND datname = current_database()",
                        [role],
                    )
                    backends = cursor.fetchone()[0]
                if backends == 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert backends == 1
        finally:
            cancel.cancel()
            thread.join(5)

    def test_records_left_running_by_a_dead_process_do_not_count(self):
        user, app = funded_user("phoenix", grants=1)
        QueryLimits.objects.create(application_id=app, max_concurrent=1, time_limit_ms=1000)
        stale = QueryRecord.objects.create(
            user=user,
            application_id=app,
            sql="SELECT 1",
            status="running",
            created_at=timezone.now() - timedelta(hours=1),
        )
        outcome, _ = run(user, app, "SELECT 1")
        assert outcome.total_rows == 1
        stale.refresh_from_db()
        assert (stale.status, stale.error_code) == ("failed", errors.INTERNAL)


class TestDatabaseDefences:
    def raw(self, sql: str, reads: dict[str, frozenset[str]] | None = None) -> QueryError | executor.ExecutionResult:
        target = services.database_target()
        query = CompiledQuery(
            sql=sql,
            params={},
            dialect=target.dialect,  # type: ignore[arg-type]
            schema=[],
            max_rows=10,
            limit=11,
            tables=(),
            reads=catalog.reads() if reads is None else reads,
        )
        try:
            return executor.execute(query, target, time_limit_ms=2000)
        except QueryError as exc:
            return exc

    @pytest.mark.parametrize(
        ("sql", "codes"),
        [
            *(
                pytest.param(sql, SQLITE_REFUSALS, marks=on_sqlite, id=f"sqlite:{sql}")
                for sql in (
                    "SELECT * FROM sqlite_master",
                    "SELECT name FROM sqlite_schema",
                    "SELECT password FROM accounts_user",
                    "SELECT prev_hash FROM credits_ledgerentry",
                    "SELECT count(*) FROM credits_ledgerentry",
                    "PRAGMA table_info(credits_ledgerentry)",
                    "ATTACH DATABASE ':memory:' AS other",
                    "SELECT load_extension('x')",
                    "SELECT randomblob(10)",
                    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r",
                    "DELETE FROM credits_ledgerentry",
                    "CREATE TABLE stolen AS SELECT 1",
                )
            ),
            *(
                pytest.param(sql, POSTGRESQL_REFUSALS, marks=on_postgresql, id=f"postgresql:{sql}")
                for sql in (
                    "SELECT password FROM accounts_user",
                    "SELECT prev_hash FROM credits_ledgerentry",
                    "SELECT * FROM django_session",
                    "DELETE FROM credits_ledgerentry",
                    "CREATE TABLE stolen (a int)",
                )
            ),
        ],
    )
    def test_the_database_denies_what_the_compiler_would_refuse(self, sql, codes):
        """SQLite's authorizer and PostgreSQL's query role, each on its own."""
        funded_user("victim", grants=1)
        result = self.raw(sql)
        assert isinstance(result, QueryError) and result.code in codes
        assert LedgerEntry.objects.count() == 1

    def test_the_database_lets_the_mapped_columns_be_read(self):
        funded_user("mapped", grants=2)
        result = self.raw("SELECT id, amount FROM credits_ledgerentry")
        assert isinstance(result, executor.ExecutionResult) and result.total_rows == 2

    @on_postgresql
    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT set_config('role', '{admin}', false)",
            "SELECT set_config('role', '{admin}', false), password FROM accounts_user",
            "SELECT password FROM accounts_user",
            "SELECT prev_hash FROM credits_ledgerentry",
            "SELECT id, idempotency_key, actor_id FROM credits_ledgerentry",
            "SELECT * FROM credits_ledgerentry",
            "SELECT nextval('credits_ledgerentry_id_seq')",
        ],
    )
    def test_postgresql_raw_sql_past_the_compiler_is_denied_by_the_database(self, sql):
        funded_user("victim", grants=1)
        result = self.raw(sql.format(admin=connection.settings_dict["USER"]))
        assert isinstance(result, QueryError) and result.code == errors.UNAUTHORIZED, result

    @on_postgresql
    @pytest.mark.parametrize(
        "statements",
        [
            ["RESET ROLE", "SELECT password FROM accounts_user"],
            ["RESET ROLE", "SELECT prev_hash FROM credits_ledgerentry"],
            ["SELECT set_config('role', '{admin}', false)"],
            ["SET ROLE {admin}"],
            ["SET SESSION AUTHORIZATION {admin}"],
            ["SELECT password FROM accounts_user"],
            ["SELECT idempotency_key FROM credits_ledgerentry"],
            ["SELECT * FROM django_session"],
            ["INSERT INTO credits_ledgerentry (sequence) VALUES (99)"],
            ["UPDATE credits_creditaccount SET balance = 1000000"],
            ["DELETE FROM credits_ledgerentry"],
            ["CREATE TABLE stolen (a int)"],
            ["CREATE FUNCTION stolen() RETURNS int LANGUAGE sql AS 'SELECT 1'"],
        ],
    )
    def test_postgresql_query_login_alone_is_denied_without_compiler_or_read_only(self, statements):
        """The role's privileges hold on their own: a session of the query
        login, even with read-only transactions turned off, gets the
        database's permission error."""
        import psycopg

        funded_user("victim", grants=1)
        target = services.database_target()
        executor.ensure_role(target)
        admin = connection.settings_dict["USER"]
        with psycopg.connect(**target.pg_params, autocommit=True) as session:
            session.execute("SET default_transaction_read_only = off")
            for statement in statements[:-1]:
                session.execute(statement)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                session.execute(statements[-1].format(admin=admin))
            row = session.execute("SELECT current_user, session_user").fetchone()
            assert row == (target.pg_role, target.pg_role)
        assert LedgerEntry.objects.count() == 1

    @on_postgresql
    def test_postgresql_queries_run_as_the_query_login_in_a_read_only_transaction(self):
        target = services.database_target()
        chunks: list[list[Any]] = []
        result = executor.execute(
            CompiledQuery(
                sql="SELECT current_user, session_user, current_setting('transaction_read_only')",
                params={},
                dialect="postgres",
                schema=[],
                max_rows=10,
                limit=11,
                tables=(),
                reads={},
            ),
            target,
            time_limit_ms=2000,
            on_chunk=lambda rows, schema: chunks.extend(rows),
        )
        assert result.total_rows == 1
        assert chunks == [[target.pg_role, target.pg_role, "on"]]
        assert target.pg_params["user"] == target.pg_role != connection.settings_dict["USER"]
        assert target.admin_params["user"] == connection.settings_dict["USER"]

    @on_postgresql
    def test_postgresql_stacked_statements_never_reach_the_database(self):
        funded_user("victim", grants=1)
        for sql in (
            "RESET ROLE; SELECT password FROM accounts_user",
            "SELECT 1; SELECT set_config('role', 'postgres', false)",
            "SELECT id FROM credits_ledgerentry; DELETE FROM credits_ledgerentry",
        ):
            result = self.raw(sql)
            assert isinstance(result, QueryError) and result.code in (errors.VALIDATION_FAILED, errors.UNAUTHORIZED)
        assert LedgerEntry.objects.count() == 1

    @on_postgresql
    def test_postgresql_a_privileged_query_login_is_refused(self):
        from dataclasses import replace

        target = services.database_target()
        privileged = replace(target, pg_params=target.admin_params, ensure_role=False)
        result = None
        try:
            executor.execute(
                CompiledQuery("SELECT 1", {}, "postgres", [], 10, 11, (), {}), privileged, time_limit_ms=2000
            )
        except QueryError as exc:
            result = exc
        assert result is not None and result.code == errors.INTERNAL

    @on_postgresql
    def test_postgresql_role_setup_takes_back_extra_privileges(self):
        import psycopg

        from queryengine import pgrole

        target = services.database_target()
        executor.ensure_role(target)
        role = target.pg_role
        with connection.cursor() as cursor:
            for statement in (
                f"GRANT SELECT ON accounts_user TO {role}",
                f"GRANT SELECT (prev_hash) ON credits_ledgerentry TO {role}",
                f"GRANT USAGE ON SEQUENCE credits_ledgerentry_id_seq TO {role}",
                f"GRANT CREATE ON SCHEMA public TO {role}",
            ):
                cursor.execute(statement)
        with psycopg.connect(**target.admin_params, autocommit=True) as admin:
            done = pgrole.setup_role(admin, role, target.grants)
            assert any("accounts_user" in line for line in done)
            assert pgrole.setup_role(admin, role, target.grants) == []
        with psycopg.connect(**target.pg_params, autocommit=True) as session:
            for sql in (
                "SELECT password FROM accounts_user",
                "SELECT prev_hash FROM credits_ledgerentry",
                "SELECT nextval('credits_ledgerentry_id_seq')",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    session.execute(sql)
            assert session.execute("SELECT has_schema_privilege('public', 'CREATE')").fetchone() == (False,)
            assert session.execute("SELECT count(*) FROM credits_ledgerentry").fetchone() is not None

    def test_the_query_login_comes_from_its_url_whose_user_must_be_the_role(self, settings):
        from django.core.exceptions import ImproperlyConfigured

        login = config.query_login_from_url(
            "postgres://ledgercore_query:s3cret@db.example:6432/ledger", "ledgercore_query"
        )
        assert login["user"] == "ledgercore_query" and login["password"] == "s3cret"
        assert (login["host"], login["port"], login["dbname"]) == ("db.example", "6432", "ledger")
        assert (
            config.query_login_from_url("postgresql://replica/ledger", "ledgercore_query")["user"] == "ledgercore_query"
        )
        with pytest.raises(ImproperlyConfigured, match="LEDGERCORE_QUERY_DATABASE_URL"):
            config.query_login_from_url("postgres://postgres@db/ledger", "ledgercore_query")
        with pytest.raises(ImproperlyConfigured, match="LEDGERCORE_QUERY_DATABASE_URL"):
            config.query_login_from_url("mysql://ledgercore_query@db/ledger", "ledgercore_query")
        settings.LEDGERCORE_QUERY_DATABASE_URL = "sqlite:///x"
        with pytest.raises(ImproperlyConfigured):
            config.check_settings()

    @on_postgresql
    def test_postgresql_query_login_settings(self, settings):
        settings.LEDGERCORE_QUERY_PG_PASSWORD = "pw"
        target = services.database_target()
        assert target.pg_params["password"] == "pw" and target.pg_password == "pw"
        assert target.pg_params["dbname"] == connection.settings_dict["NAME"]
        settings.LEDGERCORE_QUERY_DATABASE_URL = "postgres://127.0.0.1:5433/elsewhere"
        target = services.database_target()
        assert (target.pg_params["port"], target.pg_params["password"]) == ("5433", "pw")
        assert target.admin_params["dbname"] == connection.settings_dict["NAME"]

    def test_queries_run_on_their_own_connection(self):
        user, app = funded_user("separate", grants=1)
        before = connection.connection
        run(user, app, "SELECT count(*) FROM credit_entries")
        assert connection.connection is before


class TestResultValues:
    MOMENT = datetime(2026, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC)
    COLUMNS: ClassVar[list[list[Any]]] = [
        [1, 2, None, 3],
        [1, True, None],
        [Decimal("1.50"), Decimal("2"), None],
        [Decimal("1.5"), 2, 2.5],
        [1.5, float("nan"), None],
        [1.5, 2.0],
        [float("inf"), 1.0],
        ["a", "b", None],
        ["2026-03-04 05:06:07.891234", "2026-03-04 05:06:07"],
        [" 2026-03-04 05:06:07 ", "not a time", None],
        ["2026-03-04T05:06:07+02:00", "2026-03-04 05:06:07"],
        [MOMENT, MOMENT.replace(year=1969), None],
        [MOMENT, MOMENT.replace(tzinfo=None)],
        [MOMENT.replace(tzinfo=None), MOMENT.replace(tzinfo=None, microsecond=999)],
        [MOMENT.astimezone(timezone_of(timedelta(hours=-5))), MOMENT],
        [date(2026, 3, 4), None],
        [0, 1, None],
        [b"\x00\xff", None],
        ['{"a": 1}', "[1, 2]", "not json", None],
        [{"a": Decimal("1.5")}, [1, 2], None],
        [uuid4(), None],
        [timedelta(seconds=1), None],
    ]

    @pytest.mark.parametrize("kind", [*values.CONVERTERS, "text", "unknown"])
    def test_chunk_conversion_equals_converting_value_by_value(self, kind):
        for column in self.COLUMNS:
            schema = [{"name": "x", "type": kind}, {"name": "y", "type": "integer"}]
            rows = [(value, index) for index, value in enumerate(column)]
            by_value = [[fn(v) for fn, v in zip(values.converters(schema), row, strict=True)] for row in rows]
            by_chunk = values.rows_converter(schema)(rows)
            assert repr(by_chunk) == repr(by_value), (kind, column)
        assert values.rows_converter([])([(), ()]) == [[], []]

    @pytest.mark.parametrize("kind", [*values.CONVERTERS, "text", "unknown"])
    def test_rows_are_plain_only_when_every_value_is_a_string_integer_boolean_or_null(self, kind):
        plain_types = {str, int, bool, type(None)}
        for column in self.COLUMNS:
            schema = [{"name": "x", "type": kind}, {"name": "y", "type": "integer"}]
            converted = values.rows_converter(schema)([(value, index) for index, value in enumerate(column)])
            if isinstance(converted, values.PlainRows):
                assert {type(v) for row in converted for v in row} <= plain_types, (kind, column)

    def test_a_chunk_of_integers_text_and_sqlite_timestamps_is_plain(self):
        schema = [{"name": "n", "type": "integer"}, {"name": "t", "type": "text"}, {"name": "at", "type": "timestamp"}]
        rows = [(1, "grant", "2026-03-04 05:06:07.891234"), (2, None, "2026-03-04 05:06:08")]
        converted = values.rows_converter(schema)(rows)
        assert isinstance(converted, values.PlainRows)
        assert converted == [[1, "grant", 1772600767891], [2, None, 1772600768000]]
        with_float = values.rows_converter([*schema, {"name": "f", "type": "float"}])([(*rows[0], 1.5)])
        assert not isinstance(with_float, values.PlainRows)


class TestAsyncAndCatalog:
    async def test_run_query_async_calls_async_callbacks_in_order(self):
        from channels.db import database_sync_to_async

        user, app = await database_sync_to_async(funded_user)("async", 3)
        seen: list[str] = []

        async def started(query_id: str, estimated_ms: int) -> None:
            seen.append("started")

        async def chunk(rows: list[list[Any]], schema: list[dict[str, str]]) -> None:
            seen.extend(str(row[0]) for row in rows)

        async def completed(duration_ms: int, total: int, truncated: bool) -> None:
            seen.append(f"completed {total}")

        outcome = await outbox.run_query_async(
            user_pk=user.pk,
            application_id=app,
            sql="SELECT sequence FROM credit_entries ORDER BY 1",
            on_started=started,
            on_chunk=chunk,
            on_completed=completed,
        )
        assert seen == ["started", "1", "2", "3", "completed 3"] and outcome.total_rows == 3

    async def test_a_failing_event_callback_fails_the_query_after_the_events_before_it(self, settings):
        from channels.db import database_sync_to_async

        settings.LEDGERCORE_QUERY_CHUNK_ROWS = 1
        user, app = await database_sync_to_async(funded_user)("fragile", 12)
        seen: list[str] = []

        async def started(query_id: str, estimated_ms: int) -> None:
            seen.append("started")

        async def chunk(rows: list[list[Any]], schema: list[dict[str, str]]) -> None:
            if rows[0][0] == 3:
                raise ConnectionError("the socket went away")
            seen.append(str(rows[0][0]))

        with pytest.raises(services.QueryFailed) as caught:
            await outbox.run_query_async(
                user_pk=user.pk,
                application_id=app,
                sql="SELECT sequence FROM credit_entries ORDER BY 1",
                on_started=started,
                on_chunk=chunk,
            )
        assert caught.value.code == errors.INTERNAL
        assert seen == ["started", "1", "2"]
        record = await database_sync_to_async(QueryRecord.objects.get)(pk=caught.value.query_id)
        assert record.status == "failed"

    def test_catalog_endpoint_lists_tables_columns_and_types(self):
        user, _ = funded_user("browser", grants=0)
        client = APIClient()
        assert client.get("/api/query/catalog/").status_code in (401, 403)
        client.force_authenticate(user=user)
        body = client.get("/api/query/catalog/").json()
        tables = {table["name"]: table for table in body["tables"]}
        assert {"credit_entries", "query_history"} <= set(tables)
        assert tables["credit_entries"]["scope"] == "private"
        assert {"name": "amount", "type": "integer"}.items() <= next(
            c for c in tables["credit_entries"]["columns"] if c["name"] == "amount"
        ).items()
        assert "count" in body["functions"]

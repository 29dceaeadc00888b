"""The query compiler alone (no database, no Django): what it refuses, how
it guards private tables, how it binds parameters and caps results."""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp

from queryengine.catalog import Catalog, CatalogError, Column, Scope, Table
from queryengine.compiler import Caller, CompiledQuery, TargetDialect, compile_query
from queryengine.errors import UNAUTHORIZED, VALIDATION_FAILED, QueryError

LEDGER = Table(
    name="credit_entries",
    scope=Scope.PRIVATE,
    source="ledger_entry AS e JOIN ledger_account AS a ON a.id = e.account_id",
    user_column="a.user_id",
    application_column="a.application_id",
    columns=(
        Column("transaction_id", "integer", "e.id"),
        Column("type", "text", "e.kind"),
        Column("amount", "integer", "e.amount"),
        Column("created_at", "timestamp", "e.created_at"),
    ),
)
HISTORY = Table(
    name="query_history",
    scope=Scope.PRIVATE,
    source="query_record AS q",
    user_column="q.user_id",
    application_column="q.application_id",
    columns=(Column("query_id", "text", "q.id"), Column("status", "text", "q.status")),
)
TRADES = Table(
    name="trades",
    source="md_trade AS t",
    columns=(
        Column("price", "decimal", "t.price"),
        Column("ts", "timestamp", "t.ts"),
        Column("amount", "integer", "t.qty"),
    ),
)
CATALOG = Catalog([LEDGER, HISTORY, TRADES])
CALLER = Caller(user_pk=7, application_id="app_seven")
PRIVATE_REAL_TABLES = {"ledger_entry", "ledger_account", "query_record"}


def compile_sql(
    sql: str, params: object = None, *, dialect: TargetDialect = "sqlite", max_rows: int = 100, default_limit: int = 10
) -> CompiledQuery:
    return compile_query(sql, params, CATALOG, CALLER, dialect=dialect, max_rows=max_rows, default_limit=default_limit)


def refused(sql: str, params: object = None, *, dialect: TargetDialect = "sqlite") -> QueryError:
    with pytest.raises(QueryError) as caught:
        compile_sql(sql, params, dialect=dialect)
    return caught.value


def guarded_references(compiled: CompiledQuery) -> int:
    """Parse the compiled SQL back and check that every real private table
    is read inside a SELECT filtered on both reserved owner parameters, and
    that every other table reference is a catalog subquery or a renamed
    CTE. Returns the number of guarded private references."""
    tree = sqlglot.parse_one(compiled.sql, read="postgres" if compiled.dialect == "postgres" else "sqlite")
    guarded = 0
    for table in tree.find_all(exp.Table):
        name = table.name
        if name.startswith("__lc_cte_"):
            continue
        assert name in PRIVATE_REAL_TABLES | {"md_trade"}, f"unexpected table {name}"
        if name not in PRIVATE_REAL_TABLES:
            continue
        select = table.find_ancestor(exp.Select)
        assert select is not None
        where = select.args.get("where")
        assert where is not None, f"{name} read without a WHERE"
        owner_params = {p.name for p in where.find_all(exp.Placeholder)} | set(
            re.findall(r"__lc_(?:user|app)", where.sql(dialect="postgres"))
        )
        assert {"__lc_user", "__lc_app"} <= owner_params, f"{name} read without the tenant guard"
        if name != "ledger_account":  # the join partner shares its SELECT
            guarded += 1
    assert compiled.params.get("__lc_user") == 7 and compiled.params.get("__lc_app") == "app_seven"
    return guarded


# ---------------------------------------------------------------- accepted


class TestAccepted:
    def test_select_star_exposes_only_public_columns(self):
        compiled = compile_sql("SELECT * FROM credit_entries")
        assert [c["name"] for c in compiled.schema] == ["transaction_id", "type", "amount", "created_at"]
        assert "account_id" not in compiled.sql.split("FROM (")[0]
        assert guarded_references(compiled) == 1

    def test_output_schema_is_typed_and_named_like_postgresql(self):
        compiled = compile_sql(
            "SELECT type, count(*), sum(amount) AS total, max(created_at) FROM credit_entries GROUP BY 1"
        )
        assert compiled.schema == [
            {"name": "type", "type": "text"},
            {"name": "count", "type": "integer"},
            {"name": "total", "type": "integer"},
            {"name": "max", "type": "timestamp"},
        ]

    def test_public_tables_get_no_tenant_guard(self):
        compiled = compile_sql("SELECT price FROM trades")
        assert "__lc_user" not in compiled.sql and compiled.params == {}
        assert compiled.tables == ("trades",)

    @pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT type, count(*) AS n FROM credit_entries GROUP BY type HAVING count(*) > 1 ORDER BY n DESC",
            "SELECT DISTINCT type FROM credit_entries WHERE amount BETWEEN -5 AND 5 OR type IN ('grant', 'refund')",
            (
                "SELECT CASE WHEN amount > 0 THEN 'in' ELSE 'out' END AS side, coalesce(nullif(type, ''), '?') FROM "
                "credit_entries"
            ),
            (
                "SELECT lower(type) || '-' || upper(type), length(type), substr(type, 1, 2), replace(type, 'a', 'b') "
                "FROM credit_entries"
            ),
            "SELECT abs(amount), round(amount / 3.0, 2), greatest(amount, 0), least(amount, 0) FROM credit_entries",
            (
                "SELECT row_number() OVER (PARTITION BY type ORDER BY created_at), lag(amount) OVER w FROM "
                "credit_entries WINDOW w AS (ORDER BY transaction_id)"
            ),
            (
                "SELECT sum(amount) OVER (ORDER BY transaction_id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM "
                "credit_entries"
            ),
            "SELECT count(*) FILTER (WHERE amount < 0), count(DISTINCT type) FROM credit_entries",
            (
                "SELECT date_trunc('day', created_at) AS day, extract(hour FROM created_at), count(*) FROM "
                "credit_entries GROUP BY 1, 2"
            ),
            (
                "SELECT * FROM credit_entries WHERE created_at > now() - interval '7 days' AND created_at < "
                "current_date + interval '1 day'"
            ),
            "SELECT cast(amount AS text), amount::double precision, cast('2024-01-01' AS date) FROM credit_entries",
            "SELECT type FROM credit_entries WHERE type ILIKE 'G%' AND type NOT LIKE 'x\\_%' ESCAPE '\\'",
            "SELECT * FROM credit_entries a LEFT JOIN trades t ON t.amount = a.amount",
            (
                "SELECT e.amount FROM credit_entries e WHERE EXISTS (SELECT 1 FROM query_history h WHERE h.status = "
                "e.type)"
            ),
            (
                "WITH big AS (SELECT * FROM credit_entries WHERE amount > 10), small AS (SELECT * FROM big WHERE "
                "amount < 100) SELECT count(*) FROM small"
            ),
            "SELECT amount FROM credit_entries UNION ALL SELECT amount FROM trades ORDER BY 1 LIMIT 5",
            "SELECT amount FROM credit_entries INTERSECT SELECT amount FROM trades",
            "SELECT amount FROM credit_entries EXCEPT SELECT amount FROM trades",
            "SELECT (SELECT max(amount) FROM credit_entries) AS top, (SELECT count(*) FROM query_history) AS queries",
            "select AMOUNT from CREDIT_ENTRIES where TYPE = 'grant'",
            'SELECT "amount" FROM "credit_entries"',
        ],
    )
    def test_analyst_queries_compile_for_both_databases(self, sql, dialect):
        compiled = compile_sql(sql, dialect=dialect)
        assert compiled.sql and compiled.limit >= 1
        if "credit_entries" in sql.lower() or "query_history" in sql:
            assert guarded_references(compiled) >= 1


# ---------------------------------------------------------------- tenant guard


class TestTenantGuard:
    @pytest.mark.parametrize(
        ("sql", "references"),
        [
            ("SELECT * FROM credit_entries", 1),
            ("SELECT * FROM credit_entries WHERE amount > 0 OR 1 = 1", 1),
            ("SELECT * FROM credit_entries WHERE true OR type = 'x'", 1),
            (
                (
                    "SELECT a.amount, b.amount FROM credit_entries a JOIN credit_entries b ON a.transaction_id = "
                    "b.transaction_id"
                ),
                2,
            ),
            ("SELECT a.amount FROM credit_entries a, credit_entries b, credit_entries c", 3),
            ("SELECT * FROM credit_entries x JOIN query_history y ON 1 = 1", 2),
            ("SELECT amount FROM credit_entries UNION SELECT amount FROM credit_entries", 2),
            ("SELECT amount FROM trades UNION ALL SELECT amount FROM credit_entries", 1),
            ("SELECT * FROM (SELECT * FROM (SELECT * FROM credit_entries) a) b", 1),
            ("SELECT amount FROM trades WHERE amount IN (SELECT amount FROM credit_entries)", 1),
            ("SELECT amount FROM trades t WHERE EXISTS (SELECT 1 FROM credit_entries c WHERE c.amount = t.amount)", 1),
            ("SELECT (SELECT count(*) FROM credit_entries) FROM trades", 1),
            ("WITH c AS (SELECT * FROM credit_entries) SELECT * FROM c JOIN c AS d ON true", 1),
            ("WITH c AS (SELECT * FROM credit_entries) SELECT * FROM c UNION ALL SELECT * FROM credit_entries", 2),
            # A CTE shadowing a catalog name reads the guarded table in its body.
            ("WITH credit_entries AS (SELECT * FROM credit_entries) SELECT * FROM credit_entries", 1),
            ("WITH query_history AS (SELECT 1 AS status) SELECT * FROM query_history", 0),
            ("SELECT * FROM CREDIT_ENTRIES", 1),
            ('SELECT * FROM "credit_entries" AS "Credit_Entries"', 1),
            ("SELECT amount FROM credit_entries WHERE type = 'x' UNION SELECT amount FROM credit_entries WHERE 1=1", 2),
        ],
    )
    @pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
    def test_every_private_reference_is_guarded(self, sql, references, dialect):
        compiled = compile_sql(sql, dialect=dialect)
        if references:
            assert guarded_references(compiled) == references
        else:
            assert "ledger_entry" not in compiled.sql

    def test_caller_values_are_bound_not_interpolated(self):
        compiled = compile_sql("SELECT * FROM credit_entries")
        assert "app_seven" not in compiled.sql and " 7 " not in compiled.sql
        assert ":__lc_user" in compiled.sql and ":__lc_app" in compiled.sql

    def test_cte_names_are_replaced_by_reserved_names(self):
        compiled = compile_sql("WITH accounts_user AS (SELECT amount FROM credit_entries) SELECT * FROM accounts_user")
        tables = {table.name for table in sqlglot.parse_one(compiled.sql, read="sqlite").find_all(exp.Table)}
        assert tables == {"__lc_cte_1", "ledger_entry", "ledger_account"}

    def test_a_cte_is_not_visible_outside_its_query(self):
        error = refused("SELECT * FROM (WITH inner_cte AS (SELECT 1 AS a) SELECT * FROM inner_cte) s, inner_cte")
        assert error.code == UNAUTHORIZED and "inner_cte" in error.message

    def test_self_referencing_cte_without_recursive_is_not_a_cte(self):
        error = refused("WITH r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT * FROM r")
        assert error.code == UNAUTHORIZED


# ---------------------------------------------------------------- refused

WRITES = [
    "INSERT INTO credit_entries (amount) VALUES (1)",
    "UPDATE credit_entries SET amount = 0",
    "DELETE FROM credit_entries",
    "MERGE INTO credit_entries c USING trades t ON true WHEN MATCHED THEN DELETE",
    "CREATE TABLE x (a int)",
    "CREATE TABLE x AS SELECT * FROM credit_entries",
    "CREATE VIEW v AS SELECT * FROM credit_entries",
    "DROP TABLE credit_entries",
    "ALTER TABLE credit_entries ADD COLUMN x int",
    "TRUNCATE credit_entries",
    "GRANT SELECT ON credit_entries TO public",
    "REVOKE SELECT ON credit_entries FROM public",
    "WITH x AS (DELETE FROM credit_entries RETURNING *) SELECT * FROM x",
    "WITH x AS (INSERT INTO trades VALUES (1) RETURNING *) SELECT * FROM x",
    "WITH x AS (UPDATE credit_entries SET amount = 1 RETURNING *) SELECT * FROM x",
    "WITH a AS (SELECT 1), b AS (DELETE FROM trades RETURNING *) SELECT * FROM a",
    "SELECT * INTO stolen FROM credit_entries",
    "SELECT amount INTO TEMP stolen FROM credit_entries",
]
LOCKS = [
    "SELECT * FROM credit_entries FOR UPDATE",
    "SELECT * FROM credit_entries FOR SHARE",
    "SELECT * FROM credit_entries FOR NO KEY UPDATE",
    "SELECT * FROM credit_entries FOR UPDATE NOWAIT",
]
STACKED = [
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP TABLE credit_entries",
    "SELECT 1;;DELETE FROM credit_entries",
    "SELECT 1 --\n; DELETE FROM credit_entries",
    "SELECT 1 /* ; */; DELETE FROM credit_entries",
    "SELECT ';'; SELECT 2",
]
COMMANDS = [
    "PRAGMA table_info(credit_entries)",
    "PRAGMA writable_schema = 1",
    "ATTACH DATABASE '/tmp/x.db' AS x",
    "DETACH DATABASE x",
    "VACUUM",
    "VACUUM INTO '/tmp/copy.db'",
    "EXPLAIN SELECT 1",
    "EXPLAIN ANALYZE SELECT * FROM credit_entries",
    "SET role postgres",
    "SET search_path = pg_catalog",
    "RESET ROLE",
    "SHOW search_path",
    "COPY credit_entries TO '/tmp/x'",
    "COPY (SELECT 1) TO PROGRAM 'id'",
    "DO $$ BEGIN PERFORM 1; END $$",
    "CALL do_things()",
    "BEGIN",
    "COMMIT",
    "LISTEN x",
    "NOTIFY x",
    "LOAD 'auto_explain'",
    "ANALYZE",
    "REINDEX TABLE x",
    "LOCK TABLE credit_entries",
    "VALUES (1)",
    "TABLE credit_entries; DELETE FROM credit_entries",
    "",
    "   ",
    "-- only a comment",
]
FORBIDDEN_TABLES = [
    "SELECT * FROM sqlite_master",
    "SELECT * FROM sqlite_schema",
    "SELECT * FROM sqlite_temp_master",
    "SELECT name FROM main.sqlite_master",
    "SELECT * FROM pg_catalog.pg_class",
    "SELECT * FROM pg_class",
    "SELECT * FROM pg_authid",
    "SELECT * FROM pg_shadow",
    "SELECT * FROM pg_user",
    "SELECT * FROM pg_stat_activity",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM auth_user",
    "SELECT * FROM accounts_user",
    "SELECT * FROM django_session",
    "SELECT * FROM ledger_entry",
    "SELECT * FROM credits_ledgerentry",
    "SELECT * FROM public.credit_entries",
    "SELECT * FROM main.credit_entries",
    'SELECT * FROM "main"."credit_entries"',
    "SELECT * FROM catalog.public.credit_entries",
    'SELECT * FROM "Credit_Entries"',
    "SELECT * FROM credit_entries c JOIN accounts_user u ON true",
    "SELECT amount FROM credit_entries UNION SELECT id FROM accounts_user",
    "SELECT * FROM credit_entries WHERE amount IN (SELECT id FROM django_session)",
    "WITH x AS (SELECT * FROM accounts_user) SELECT 1",
]
FORBIDDEN_FUNCTIONS = [
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT pg_sleep(10)",
    "SELECT sleep(10)",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_read_binary_file('/etc/passwd')",
    "SELECT pg_ls_dir('.')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT lo_export(1, '/tmp/x')",
    "SELECT dblink('host=evil', 'select 1')",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_try_advisory_lock(1)",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT current_setting('data_directory')",
    "SELECT version()",
    "SELECT sqlite_version()",
    "SELECT randomblob(1000000000)",
    "SELECT zeroblob(1000000000)",
    "SELECT printf('%.*c', 1000000000, 'x')",
    "SELECT readfile('/etc/passwd')",
    "SELECT writefile('/tmp/x', 'y')",
    "SELECT txid_current()",
    "SELECT pg_terminate_backend(1)",
    "SELECT pg_cancel_backend(1)",
    "SELECT current_user",
    "SELECT session_user",
    "SELECT query_to_xml('select * from accounts_user', true, true, '')",
    "SELECT repeat('x', 1000000000)",
    "SELECT string_agg(type, ',') FROM credit_entries",
    "SELECT no_such_function(1)",
    "SELECT amount FROM credit_entries WHERE pg_sleep(1) IS NULL",
    "SELECT 'pg_class'::regclass",
    "SELECT cast('accounts_user' AS regclass)",
    "SELECT 1::oid",
    "SELECT * FROM generate_series(1, 1000000000)",
    "SELECT * FROM json_each('{}')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM unnest(ARRAY[1, 2])",
    "SELECT * FROM pg_ls_dir('.') AS f",
    "SELECT * FROM credit_entries c, LATERAL (SELECT 1) l",
    "SELECT ARRAY[1, 2]",
]
UNSUPPORTED = [
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT * FROM r",
    "SELECT DISTINCT ON (type) type FROM credit_entries",
    "SELECT * FROM credit_entries TABLESAMPLE SYSTEM (10)",
    "SELECT * FROM ONLY credit_entries",
    "SELECT * FROM (credit_entries a JOIN credit_entries b ON true)",
    "SELECT * FROM credit_entries c(a, b)",
    "SELECT 1 FETCH FIRST 3 ROWS ONLY",
    "SELECT 1 LIMIT ALL",
    "SELECT 1 LIMIT 'ten'",
    "SELECT 1 LIMIT 1 + 1",
    "SELECT interval '1 day'",
    "SELECT now() + interval '1 day 2 hours'",
    "SELECT date_trunc('quarter', now())",
    "SELECT extract(century FROM now())",
    "SELECT max(1, 2)",
    "SELECT row_number()",
    "SELECT (1, 2)",
    "SELECT $1",
    "SELECT %s",
    "SELECT %(x)s",
    "SELECT bogus FROM credit_entries",
    "SELECT c.bogus FROM credit_entries c",
    "SELECT x.amount FROM credit_entries c",
    'SELECT "AMOUNT" FROM credit_entries',
    "SELECT account_id FROM credit_entries",
    "SELECT rowid FROM credit_entries",
    "SELECT user FROM credit_entries",
    "SELEC 1",
    "SELECT 1 FROM",
]


class TestRefused:
    @pytest.mark.parametrize("sql", WRITES + LOCKS + STACKED + COMMANDS)
    def test_anything_but_one_read_only_select_is_refused(self, sql):
        assert refused(sql).code in (VALIDATION_FAILED, UNAUTHORIZED)

    @pytest.mark.parametrize("sql", WRITES)
    def test_writes_are_refused_for_postgresql_too(self, sql):
        assert refused(sql, dialect="postgres").code in (VALIDATION_FAILED, UNAUTHORIZED)

    @pytest.mark.parametrize("sql", FORBIDDEN_TABLES + FORBIDDEN_FUNCTIONS)
    def test_objects_outside_the_catalog_are_unauthorized(self, sql):
        assert refused(sql).code == UNAUTHORIZED

    @pytest.mark.parametrize("sql", UNSUPPORTED)
    def test_unsupported_sql_fails_validation(self, sql):
        assert refused(sql).code == VALIDATION_FAILED

    def test_messages_name_the_problem_and_its_position(self):
        assert refused("SELECT bogus FROM credit_entries").message == "unknown column 'bogus' (line 1, column 12)"
        assert "line 1" in refused("SELECT * FROM auth_user").message
        assert "pg_sleep" in refused("SELECT pg_sleep(1)").message
        assert "INTO" in refused("SELECT * INTO x FROM credit_entries").message
        assert "FOR UPDATE" in refused("SELECT * FROM credit_entries FOR UPDATE", dialect="postgres").message
        assert "RECURSIVE" in refused("WITH RECURSIVE r AS (SELECT 1) SELECT * FROM r").message
        assert "one statement" in refused("SELECT 1; SELECT 2").message
        assert "DELETE" in refused("WITH x AS (DELETE FROM trades RETURNING *) SELECT 1").message

    def test_messages_do_not_reveal_real_tables(self):
        for sql in ("SELECT bogus FROM credit_entries", "SELECT * FROM credit_entries FOR UPDATE"):
            assert "ledger_entry" not in refused(sql).message

    def test_oversized_and_binary_input_is_refused(self):
        assert refused("SELECT 1 " + " " * 100_001).code == VALIDATION_FAILED
        assert refused("SELECT '\x00'").code == VALIDATION_FAILED
        assert refused("SELECT " + "(" * 5000 + "1" + ")" * 5000).code == VALIDATION_FAILED

    def test_too_many_table_references_are_refused(self):
        sql = "SELECT 1 FROM " + ", ".join(f"trades t{i}" for i in range(40))
        assert refused(sql).code == VALIDATION_FAILED


# ---------------------------------------------------------------- parameters


class TestParameters:
    def test_positional_params_bind_in_text_order(self):
        compiled = compile_sql(
            "SELECT amount FROM credit_entries WHERE amount > ? AND type = ? OFFSET ? LIMIT ?", [1, "grant", 2, 5]
        )
        assert compiled.params["__lc_p1"] == 1 and compiled.params["__lc_p2"] == "grant"
        assert compiled.sql.index(":__lc_p1") < compiled.sql.index(":__lc_p2")
        assert compiled.limit == 5 and "OFFSET 2" in compiled.sql

    def test_question_marks_in_strings_and_comments_are_not_placeholders(self):
        compiled = compile_sql("SELECT '?' AS q, amount FROM credit_entries -- ?\nWHERE amount > ?", [3])
        assert compiled.params["__lc_p1"] == 3 and "__lc_p2" not in compiled.params

    def test_named_params(self):
        compiled = compile_sql("SELECT amount FROM credit_entries WHERE type = :kind", {"kind": "grant"})
        assert compiled.params["kind"] == "grant" and ":kind" in compiled.sql

    @pytest.mark.parametrize(
        ("sql", "params"),
        [
            ("SELECT ?", None),
            ("SELECT :a", None),
            ("SELECT ?", {"a": 1}),
            ("SELECT :a", [1]),
            ("SELECT ?, ?", [1]),
            ("SELECT ?", [1, 2]),
            ("SELECT :a", {"b": 1}),
            ("SELECT :a", {"a": 1, "unused": 2}),
            ("SELECT ?, :a", [1]),
            ("SELECT :a", {"a": [1, 2]}),
            ("SELECT :a", {"a": {"nested": 1}}),
            ("SELECT :a", {"a": float("nan")}),
            ("SELECT :a", {"a": 2**64}),
            ("SELECT :a", {"bad name": 1}),
            ("SELECT 1", "not params"),
            ("SELECT 1 LIMIT ?", ["5"]),
            ("SELECT 1 LIMIT ?", [-1]),
            ("SELECT 1 LIMIT ?", [True]),
        ],
    )
    def test_placeholders_must_match_params(self, sql, params):
        assert refused(sql, params).code == VALIDATION_FAILED

    @pytest.mark.parametrize(
        ("sql", "params"),
        [
            ("SELECT * FROM credit_entries", {"__lc_user": 8}),
            ("SELECT :x FROM credit_entries", {"x": 1, "__lc_app": "app_other"}),
            ("SELECT * FROM credit_entries WHERE :__lc_user = 1", {"x": 1}),
            ("SELECT * FROM credit_entries WHERE 1 = :__lc_app", None),
            ("SELECT :__lc_p1", [1]),
            ("SELECT * FROM credit_entries AS __lc_cte_1", None),
            ("WITH __lc_cte_1 AS (SELECT 1) SELECT * FROM __lc_cte_1", None),
            ("SELECT amount AS __lc_user FROM credit_entries", None),
        ],
    )
    def test_reserved_names_cannot_be_used_or_overridden(self, sql, params):
        assert refused(sql, params).code == UNAUTHORIZED

    def test_percent_signs_are_escaped_for_psycopg(self):
        compiled = compile_sql(
            "SELECT amount % 2, '50%' AS pct, '%(__lc_user)s' AS trick, '%s' FROM credit_entries WHERE type LIKE :p",
            {"p": "g%"},
            dialect="postgres",
        )
        text = compiled.sql
        assert "%% 2" in text and "'50%%'" in text and "'%%(__lc_user)s'" in text and "'%%s'" in text
        # The only real placeholders left are exactly the bound parameters.
        unescaped = re.findall(r"(?<!%)%\((\w+)\)s", text.replace("%%", ""))
        assert sorted(unescaped) == sorted(["p", "__lc_user", "__lc_app"])
        assert compiled.params == {"p": "g%", "__lc_user": 7, "__lc_app": "app_seven"}

    def test_sqlite_placeholders_are_named(self):
        compiled = compile_sql("SELECT amount FROM credit_entries WHERE amount > ?", [1])
        assert re.findall(r":(\w+)", compiled.sql) == ["__lc_user", "__lc_app", "__lc_p1"]


# ---------------------------------------------------------------- limits


class TestLimits:
    def test_default_limit_asks_one_more_row_to_detect_a_cut(self):
        compiled = compile_sql("SELECT * FROM credit_entries", default_limit=10, max_rows=100)
        assert (compiled.limit, compiled.max_rows) == (11, 10)
        assert compiled.sql.endswith("LIMIT 11")

    def test_explicit_limit_within_the_cap_is_kept(self):
        compiled = compile_sql("SELECT * FROM credit_entries LIMIT 50", max_rows=100)
        assert (compiled.limit, compiled.max_rows) == (50, 100)

    def test_explicit_limit_is_capped_at_max_rows_plus_one(self):
        compiled = compile_sql("SELECT * FROM credit_entries LIMIT 1000000", max_rows=100)
        assert (compiled.limit, compiled.max_rows) == (101, 100)
        compiled = compile_sql("SELECT * FROM credit_entries LIMIT ?", [10**9], max_rows=100)
        assert compiled.limit == 101 and "__lc_p1" not in compiled.params

    def test_set_operations_are_limited_as_a_whole(self):
        compiled = compile_sql("SELECT amount FROM credit_entries UNION SELECT amount FROM trades")
        assert compiled.sql.endswith("LIMIT 11")

    def test_inner_limits_stay(self):
        compiled = compile_sql("SELECT * FROM (SELECT amount FROM credit_entries LIMIT 3) s")
        assert "LIMIT 3" in compiled.sql and compiled.sql.endswith("LIMIT 11")


# ---------------------------------------------------------------- dialects


class TestDialects:
    def test_date_functions_are_translated_for_sqlite(self):
        compiled = compile_sql(
            "SELECT date_trunc('week', created_at), extract(dow FROM created_at), created_at - interval '2 hours' "
            "FROM credit_entries"
        )
        assert "STRFTIME('%Y-%m-%d 00:00:00', " in compiled.sql and "'weekday 0', '-6 days'" in compiled.sql
        assert "STRFTIME('%w'" in compiled.sql and "'-2 hours'" in compiled.sql
        assert [c["type"] for c in compiled.schema] == ["timestamp", "integer", "timestamp"]

    def test_date_functions_stay_native_on_postgresql(self):
        compiled = compile_sql("SELECT date_trunc('day', created_at) FROM credit_entries", dialect="postgres")
        assert "DATE_TRUNC('DAY'" in compiled.sql

    def test_comments_are_not_regenerated(self):
        compiled = compile_sql("SELECT /* hello */ amount FROM credit_entries -- bye")
        assert "hello" not in compiled.sql and "bye" not in compiled.sql


# ---------------------------------------------------------------- catalog


class TestCatalog:
    def test_tables_must_qualify_real_columns(self):
        with pytest.raises(CatalogError):
            Catalog([Table(name="t", source="real AS r", columns=(Column("a", "integer", "a"),))])

    def test_private_tables_need_owner_columns(self):
        with pytest.raises(CatalogError):
            Catalog(
                [Table(name="t", source="real AS r", scope=Scope.PRIVATE, columns=(Column("a", "integer", "r.a"),))]
            )

    def test_public_names_and_types_are_checked(self):
        with pytest.raises(CatalogError):
            Catalog([Table(name="Bad-Name", source="real AS r", columns=(Column("a", "integer", "r.a"),))])
        with pytest.raises(CatalogError):
            Catalog([Table(name="t", source="real AS r", columns=(Column("a", "money", "r.a"),))])

    def test_reads_list_exactly_the_mapped_real_columns(self):
        assert CATALOG.get("credit_entries").reads == {  # type: ignore[union-attr]
            "ledger_entry": frozenset({"id", "kind", "amount", "created_at", "account_id"}),
            "ledger_account": frozenset({"id", "user_id", "application_id"}),
        }

    def test_registering_a_different_table_under_a_taken_name_fails(self):
        catalog = Catalog([TRADES])
        with pytest.raises(CatalogError):
            catalog.register(Table(name="trades", source="x AS x", columns=(Column("a", "integer", "x.a"),)))
        catalog.register(TRADES)  # the same definition again is harmless

    def test_describe_lists_tables_columns_and_types(self):
        described = {t["name"]: t for t in CATALOG.describe()}
        assert described["credit_entries"]["scope"] == "private"
        assert {"name": "amount", "type": "integer", "description": ""} in described["credit_entries"]["columns"]

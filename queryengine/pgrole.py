"""The PostgreSQL login user queries run as: SELECT on the catalog's real
columns and nothing else.

The executor connects AS this role (it is both ``session_user`` and
``current_user``), instead of entering it from Django's own, often
superuser, login with ``SET ROLE``: a statement that slipped past the
compiler cannot leave it (``RESET ROLE``, ``set_config('role', ...)`` and
``SET SESSION AUTHORIZATION`` only reach roles the session user may become,
and this one is a member of none).

The role is LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
NOREPLICATION NOBYPASSRLS, defaults to read-only transactions, and holds
exactly: CONNECT on the database, USAGE on the schema, and SELECT on the
catalog's columns. Whatever it held before beyond that (on the database,
the schema, its tables, sequences and functions, memberships in other
roles) is revoked.

What stays, because PostgreSQL grants it to PUBLIC (every role) and taking
it from PUBLIC would change the database for every other user too:

- reading the system catalogs (``pg_catalog``, ``information_schema``):
  names and definitions of tables, columns, functions, roles; never row
  data of the application's tables;
- EXECUTE on functions (built-in ones, and the application's own, such as
  the ledger's trigger function, which cannot be called outside a trigger);
- CONNECT and TEMPORARY on the database (temporary tables cannot be created
  in the executor's read-only transactions) and USAGE on plpgsql;
- ``SET`` of user-settable parameters for its own session (the executor
  sets its limits in each transaction after that would matter).

Setting it up needs CREATEROLE (or superuser) and ownership of the tables
or the grant option on them; ``manage.py setup_query_role`` does it, and
the executor tries it once per process and catalog before the first query
(failing quietly when Django's login may not: queries then fail closed,
as the role cannot log in or read anything).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from psycopg import errors, sql

ROLE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# pg_roles column -> the value the query role must have, and its keyword.
ATTRIBUTES: dict[str, tuple[bool, str]] = {
    "rolcanlogin": (True, "LOGIN"),
    "rolsuper": (False, "NOSUPERUSER"),
    "rolcreatedb": (False, "NOCREATEDB"),
    "rolcreaterole": (False, "NOCREATEROLE"),
    "rolinherit": (False, "NOINHERIT"),
    "rolreplication": (False, "NOREPLICATION"),
    "rolbypassrls": (False, "NOBYPASSRLS"),
}
ROLE_DEFAULTS = {"default_transaction_read_only": "on"}


def check_role_name(role: str) -> str:
    if not ROLE_NAME_RE.match(role):
        raise ValueError(f"query role name {role!r} must match {ROLE_NAME_RE.pattern}")
    return role


def current_schema(connection: Any) -> str:
    row = connection.execute("SELECT current_schema()").fetchone()
    return str(row[0]) if row and row[0] else "public"


def _attributes_clause() -> sql.Composable:
    return sql.SQL(" ".join(keyword for _, keyword in ATTRIBUTES.values()))


def _ensure_login(connection: Any, role: str, password: str | None, done: list[str]) -> None:
    """Create the role, or bring an existing one to exactly the attributes
    above. Roles are shared by every database of the server, so nothing is
    written when nothing differs (concurrent setups on other databases
    would otherwise collide on the same catalog row)."""
    ident = sql.Identifier(role)
    columns = sql.SQL(", ").join(sql.Identifier(column) for column in ATTRIBUTES)
    row = connection.execute(
        sql.SQL("SELECT {}, rolconfig FROM pg_roles WHERE rolname = %s").format(columns), (role,)
    ).fetchone()
    secret = sql.SQL(" PASSWORD {}").format(sql.Literal(password)) if password else sql.SQL("")
    if row is None:
        try:
            with connection.transaction():
                connection.execute(sql.SQL("CREATE ROLE {} WITH {}{}").format(ident, _attributes_clause(), secret))
            done.append(f"created login role {role}")
            row = connection.execute(
                sql.SQL("SELECT {}, rolconfig FROM pg_roles WHERE rolname = %s").format(columns), (role,)
            ).fetchone()
        except errors.DuplicateObject:
            row = connection.execute(
                sql.SQL("SELECT {}, rolconfig FROM pg_roles WHERE rolname = %s").format(columns), (role,)
            ).fetchone()
    else:
        if password:
            connection.execute(sql.SQL("ALTER ROLE {}{}").format(ident, secret))
            done.append(f"set the password of {role}")
    assert row is not None
    wrong = [keyword for (want, keyword), have in zip(ATTRIBUTES.values(), row, strict=False) if bool(have) != want]
    if wrong:
        connection.execute(sql.SQL("ALTER ROLE {} WITH {}").format(ident, _attributes_clause()))
        done.append(f"set {' '.join(wrong)} on {role}")
    config = set(row[len(ATTRIBUTES)] or ())
    for name, value in ROLE_DEFAULTS.items():
        if f"{name}={value}" not in config:
            connection.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(ident, sql.Identifier(name), sql.SQL(value)))
            done.append(f"{role} defaults to {name} = {value}")
    granted = connection.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s ORDER BY 1",
        (role,),
    ).fetchall()
    for (other,) in granted:
        connection.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(other), ident))
        done.append(f"revoked membership of {role} in {other}")


def setup_role(
    connection: Any, role: str, reads: Mapping[str, frozenset[str]], *, password: str | None = None
) -> list[str]:
    """Make ``role`` a login that can read exactly ``reads`` (real table ->
    columns) in the current schema of the current database, and nothing
    else it can be denied. ``connection`` is an autocommit connection of a
    user with CREATEROLE that owns the tables. ``password`` (when given)
    becomes the role's password; otherwise a new role gets none and an
    existing one keeps its own. Returns what was done, for the command.

    Only differences are written: grants live in catalog rows that other
    processes setting up the same role may be updating at the same time."""
    check_role_name(role)
    done: list[str] = []
    with connection.transaction():
        _ensure_login(connection, role, password, done)
        oid = connection.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0]
        schema = current_schema(connection)
        _database_and_schemas(connection, role, oid, schema, done)
        _tables(connection, role, oid, schema, reads, done)
        functions = connection.execute(
            "SELECT DISTINCT p.oid::regprocedure::text FROM pg_proc p, aclexplode(p.proacl) a "
            "WHERE a.grantee = %s ORDER BY 1",
            (oid,),
        ).fetchall()
        for (function,) in functions:
            connection.execute(
                sql.SQL("REVOKE ALL ON FUNCTION {} FROM {}").format(sql.SQL(function), sql.Identifier(role))
            )
            done.append(f"revoked EXECUTE on {function}")
    return done


def _database_and_schemas(connection: Any, role: str, oid: int, schema: str, done: list[str]) -> None:
    ident = sql.Identifier(role)
    database = connection.execute("SELECT current_database()").fetchone()[0]
    held = {
        row[0]
        for row in connection.execute(
            "SELECT a.privilege_type FROM pg_database d, aclexplode(d.datacl) a "
            "WHERE d.datname = current_database() AND a.grantee = %s",
            (oid,),
        ).fetchall()
    }
    if held != {"CONNECT"}:
        connection.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(database), ident))
        connection.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident))
        done.append(f"CONNECT on database {database} (held: {', '.join(sorted(held)) or 'nothing'})")
    schemas: dict[str, set[str]] = {}
    for name, privilege in connection.execute(
        "SELECT n.nspname, a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = %s",
        (oid,),
    ).fetchall():
        schemas.setdefault(name, set()).add(privilege)
    for name, privileges in sorted(schemas.items()):
        if name != schema or privileges != {"USAGE"}:
            connection.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sql.Identifier(name), ident))
            done.append(f"revoked {', '.join(sorted(privileges))} on schema {name}")
    if schemas.get(schema) != {"USAGE"}:
        connection.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), ident))
        done.append(f"USAGE on schema {schema}")


def _tables(
    connection: Any, role: str, oid: int, schema: str, reads: Mapping[str, frozenset[str]], done: list[str]
) -> None:
    ident = sql.Identifier(role)
    wanted: dict[str, frozenset[str]] = {}
    for table, columns in sorted(reads.items()):
        found = connection.execute(
            "SELECT to_regclass(%s)::text", (sql.Identifier(schema, table).as_string(connection),)
        ).fetchone()
        if not columns or not (found and found[0]):
            done.append(f"skipped {schema}.{table} (missing)")
            continue
        wanted[str(found[0])] = frozenset(columns)
    # Relations (tables, views, sequences) on which the role holds anything
    # at table level: it should hold nothing there.
    whole = {
        row[0]
        for row in connection.execute(
            "SELECT DISTINCT c.oid::regclass::text FROM pg_class c, aclexplode(c.relacl) a WHERE a.grantee = %s",
            (oid,),
        ).fetchall()
    }
    held: dict[str, set[str]] = {}
    extra: set[str] = set()
    for table, column, privilege in connection.execute(
        "SELECT c.oid::regclass::text, t.attname, a.privilege_type FROM pg_attribute t "
        "JOIN pg_class c ON c.oid = t.attrelid, aclexplode(t.attacl) a WHERE a.grantee = %s",
        (oid,),
    ).fetchall():
        held.setdefault(table, set()).add(column)
        if privilege != "SELECT":
            extra.add(table)
    for table in sorted(whole | extra | set(held) | set(wanted)):
        columns = wanted.get(table, frozenset())
        if table not in whole and table not in extra and held.get(table, set()) == columns:
            continue
        # Table-level REVOKE also takes back every column-level grant.
        connection.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.SQL(table), ident))
        if columns:
            connection.execute(
                sql.SQL("GRANT SELECT ({}) ON TABLE {} TO {}").format(
                    sql.SQL(", ").join(sql.Identifier(column) for column in sorted(columns)), sql.SQL(table), ident
                )
            )
            done.append(f"SELECT ({', '.join(sorted(columns))}) ON {table}")
        else:
            done.append(f"revoked everything on {table}")

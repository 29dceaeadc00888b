"""The PostgreSQL role user queries run as: SELECT on the catalog's real
columns and nothing else.

The executor switches to it with ``SET LOCAL ROLE`` inside a read-only
transaction, so even SQL that slipped past the compiler could only read the
columns the catalog maps (tenant rows are still the compiler's job). The
role is NOLOGIN; the connecting user must be a member of it (superusers
are implicitly), which ``setup_query_role`` arranges.

Setting it up needs CREATEROLE (or superuser) and ownership of the tables
or the grant option on them; ``manage.py setup_query_role`` does it, and
the executor tries it once per process and catalog before the first query
(failing quietly when the connecting user may not: the query then fails
closed at ``SET ROLE`` if the role is missing).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from psycopg import errors, sql

ROLE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_role_name(role: str) -> str:
    if not ROLE_NAME_RE.match(role):
        raise ValueError(f"query role name {role!r} must match {ROLE_NAME_RE.pattern}")
    return role


def current_schema(connection: Any) -> str:
    row = connection.execute("SELECT current_schema()").fetchone()
    return str(row[0]) if row and row[0] else "public"


def setup_role(connection: Any, role: str, reads: Mapping[str, frozenset[str]]) -> list[str]:
    """Create the role if needed and make its grants exactly ``reads``
    (real table -> columns) in the current schema, in one transaction.
    Returns what was done, for the management command."""
    check_role_name(role)
    done: list[str] = []
    ident = sql.Identifier(role)
    with connection.transaction():
        schema = current_schema(connection)
        exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            try:
                with connection.transaction():
                    connection.execute(
                        sql.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION").format(
                            ident
                        )
                    )
                done.append(f"created role {role}")
            except errors.DuplicateObject:
                pass  # created concurrently by another process
        member = connection.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,)).fetchone()
        if not (member and member[0]):
            connection.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(ident))
            done.append(f"granted {role} to the connecting user")
        schema_ident = sql.Identifier(schema)
        connection.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema_ident, ident))
        connection.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(schema_ident, ident))
        connection.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema_ident, ident))
        for table, columns in sorted(reads.items()):
            qualified = sql.Identifier(schema, table).as_string(connection)
            found = connection.execute("SELECT to_regclass(%s)", (qualified,)).fetchone()
            if not columns or not (found and found[0]):
                done.append(f"skipped {schema}.{table} (missing)")
                continue
            connection.execute(
                sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                    sql.SQL(", ").join(sql.Identifier(column) for column in sorted(columns)),
                    sql.Identifier(schema, table),
                    ident,
                )
            )
            done.append(f"SELECT ({', '.join(sorted(columns))}) ON {schema}.{table}")
    return done

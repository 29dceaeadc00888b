"""Create or refresh the PostgreSQL login user queries run as."""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser

from queryengine import pgrole, services


class Command(BaseCommand):
    help = (
        "Create the query login role (LEDGERCORE_QUERY_PG_ROLE, default ledgercore_query: LOGIN NOSUPERUSER "
        "NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS, password LEDGERCORE_QUERY_PG_PASSWORD) "
        "and grant it CONNECT on the database, USAGE on the schema and SELECT on exactly the columns of the "
        "query catalog, revoking anything else it holds. Idempotent; run with Django's database login when that "
        "user has CREATEROLE and owns the tables."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", help="Role name (default: the setting).")

    def handle(self, *args: Any, **options: Any) -> None:
        target = services.database_target()
        if target.vendor != "postgresql":
            self.stdout.write("Nothing to do: the query role exists on PostgreSQL only (SQLite uses an authorizer).")
            return
        role = options.get("role") or target.pg_role
        try:
            pgrole.check_role_name(role)
            with psycopg.connect(**target.admin_params, autocommit=True) as connection:
                done = pgrole.setup_role(connection, role, target.grants, password=target.pg_password or None)
        except (ValueError, psycopg.Error) as exc:
            raise CommandError(f"could not set up the query role {role!r}: {exc}") from exc
        for line in done or ["nothing to change"]:
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS(f"query role {role} ready"))

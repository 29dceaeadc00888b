"""Query engine settings: per-application limits and where queries run.

Settings (read with defaults; per-application overrides in QueryLimits):
LEDGERCORE_QUERY_TIME_LIMIT_MS (10000), LEDGERCORE_QUERY_MAX_ROWS (10000),
LEDGERCORE_QUERY_MAX_CONCURRENT (2), LEDGERCORE_QUERY_DEFAULT_LIMIT (1000),
LEDGERCORE_QUERY_CHUNK_ROWS (500), LEDGERCORE_QUERY_PG_ROLE
("ledgercore_query"), LEDGERCORE_QUERY_PG_PASSWORD (""),
LEDGERCORE_QUERY_DATABASE_URL (""), LEDGERCORE_QUERY_ENSURE_ROLE (True).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from psycopg.conninfo import conninfo_to_dict

from queryengine import errors, pgrole
from queryengine.catalog import catalog
from queryengine.errors import QueryError
from queryengine.executor import DatabaseTarget
from queryengine.models import QueryLimits


@dataclass(frozen=True)
class Limits:
    time_limit_ms: int
    max_rows: int
    max_concurrent: int
    default_limit: int
    chunk_rows: int


def _setting(name: str, default: int) -> int:
    value = getattr(settings, name, default)
    return max(1, int(value))


def default_limits() -> Limits:
    return Limits(
        time_limit_ms=_setting("LEDGERCORE_QUERY_TIME_LIMIT_MS", 10_000),
        max_rows=_setting("LEDGERCORE_QUERY_MAX_ROWS", 10_000),
        max_concurrent=_setting("LEDGERCORE_QUERY_MAX_CONCURRENT", 2),
        default_limit=_setting("LEDGERCORE_QUERY_DEFAULT_LIMIT", 1_000),
        chunk_rows=_setting("LEDGERCORE_QUERY_CHUNK_ROWS", 500),
    )


def limits_for(application_id: str) -> Limits:
    base = default_limits()
    override = QueryLimits.objects.filter(application_id=application_id).first()
    if override is None:
        return base
    return Limits(
        time_limit_ms=override.time_limit_ms or base.time_limit_ms,
        max_rows=override.max_rows or base.max_rows,
        max_concurrent=override.max_concurrent or base.max_concurrent,
        default_limit=override.default_limit or base.default_limit,
        chunk_rows=base.chunk_rows,
    )


def database_target() -> DatabaseTarget:
    """The default database, for the executor's own connections: on
    PostgreSQL the query role's login, and Django's for setting it up."""
    settings_dict = connections["default"].settings_dict
    vendor = connections["default"].vendor
    grants = catalog.reads()
    if vendor == "sqlite":
        return DatabaseTarget("sqlite", sqlite_path=str(settings_dict["NAME"]), grants=grants)
    if vendor == "postgresql":
        role = str(getattr(settings, "LEDGERCORE_QUERY_PG_ROLE", "ledgercore_query"))
        password = str(getattr(settings, "LEDGERCORE_QUERY_PG_PASSWORD", "") or "")
        url = str(getattr(settings, "LEDGERCORE_QUERY_DATABASE_URL", "") or "")
        admin: dict[str, Any] = {
            "dbname": settings_dict.get("NAME") or "",
            "user": settings_dict.get("USER") or None,
            "password": settings_dict.get("PASSWORD") or None,
            "host": settings_dict.get("HOST") or None,
            "port": settings_dict.get("PORT") or None,
            "application_name": "ledgercore-query-setup",
        }
        for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "passfile", "service"):
            if key in (settings_dict.get("OPTIONS") or {}):
                admin[key] = settings_dict["OPTIONS"][key]
        admin = {key: value for key, value in admin.items() if value is not None}
        if url:
            login = query_login_from_url(url, role)
        else:
            login = {**admin, "user": role, "application_name": "ledgercore-query"}
            login.pop("password", None)
        if password and not login.get("password"):
            login["password"] = password
        return DatabaseTarget(
            "postgresql",
            pg_params=login,
            pg_role=role,
            grants=grants,
            ensure_role=bool(getattr(settings, "LEDGERCORE_QUERY_ENSURE_ROLE", True)),
            admin_params=admin,
            pg_password=password,
        )
    raise QueryError(errors.INTERNAL, f"queries are not supported on {vendor}")


def query_login_from_url(url: str, role: str) -> dict[str, Any]:
    """Connection parameters from LEDGERCORE_QUERY_DATABASE_URL; its user,
    when it names one, must be the query role (the grants are the role's)."""
    name = "LEDGERCORE_QUERY_DATABASE_URL"
    if urllib.parse.urlsplit(url).scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured(f"{name}: expected a postgres:// URL")
    try:
        params: dict[str, Any] = dict(conninfo_to_dict(url))
    except Exception as exc:  # noqa: BLE001 - psycopg.ProgrammingError with libpq's reason
        raise ImproperlyConfigured(f"{name}: invalid URL ({str(exc).strip()})") from None
    user = params.setdefault("user", role)
    if user != role:
        raise ImproperlyConfigured(f"{name}: its user must be the query role {role!r} (LEDGERCORE_QUERY_PG_ROLE)")
    params.setdefault("application_name", "ledgercore-query")
    return params


def check_settings() -> None:
    """Fail at startup on a query login that cannot work."""
    url = str(getattr(settings, "LEDGERCORE_QUERY_DATABASE_URL", "") or "")
    role = str(getattr(settings, "LEDGERCORE_QUERY_PG_ROLE", "ledgercore_query"))
    try:
        pgrole.check_role_name(role)
    except ValueError as exc:
        raise ImproperlyConfigured(f"LEDGERCORE_QUERY_PG_ROLE: {exc}") from None
    if url:
        query_login_from_url(url, role)

"""The stack under test, and environments for server subprocesses on it.

The embedded stack is SQLite with the in-memory layer; the scaled stack is
PostgreSQL with Redis (DATABASE_URL/REDIS_URL). A server subprocess gets a
database of its own: a SQLite file under the test's tmp_path, or a new
database on the run's PostgreSQL together with the run's Redis and prefix.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from django.conf import settings

from devtools.servers import migrated_environment, server_environment
from tests.wsclient import DEV_SECRET

Environment = AbstractContextManager[dict[str, str]]


def scaled_stack() -> bool:
    return bool(settings.REDIS_URL) and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def maintenance_url() -> str:
    """The run's PostgreSQL server, at its maintenance database."""
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"


def _servers(scaled: bool) -> dict[str, Any]:
    if not scaled:
        return {}
    return {
        "postgres_url": maintenance_url(),
        "redis_url": settings.REDIS_URL,
        "redis_prefix": settings.LEDGERCORE_REDIS_PREFIX,
    }


def stack_env(tmp_path: Path, scaled: bool, **extra: str) -> Environment:
    """devtools.servers.server_environment (demo data) on the embedded or the
    scaled stack, logging at DEBUG."""
    return server_environment(tmp_path, dev_secret=DEV_SECRET, **_servers(scaled), LOG_LEVEL="DEBUG", **extra)


def migrated_stack_env(tmp_path: Path, scaled: bool, **extra: str) -> Environment:
    """devtools.servers.migrated_environment (migrated, empty) on the embedded
    or the scaled stack."""
    return migrated_environment(tmp_path, dev_secret=DEV_SECRET, **_servers(scaled), **extra)

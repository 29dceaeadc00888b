"""Fresh databases for server subprocesses, copied from a template.

Migrating a new database and loading the demo data (``seed_demo``) takes
15-20 s; a test run needs dozens of such databases. The first one of each
kind is built once per process into a template: a SQLite file, or a
PostgreSQL database copied with ``CREATE DATABASE ... TEMPLATE``. Each later
database is a copy of it, on which ``seed_demo`` runs again to bring the
demo data up to the present (it is idempotent: it adds the demo trades of
the time since the template was made, nothing else). Templates are removed
when the process exits.

A template is reused only for the same stack, server and settings (every
``LEDGERCORE_*``, ``DJANGO_*`` and ``DEVTOOLS_*`` variable of the
environment but the per-database ones).
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

# The variables that name one database (or its files) rather than settings.
PER_DATABASE = frozenset({"LEDGERCORE_VAR_DIR", "LEDGERCORE_REDIS_PREFIX", "DATABASE_URL", "REDIS_URL"})
SQLITE_NAME = "db.sqlite3"

Manage = Callable[..., str]

_templates: dict[tuple[object, ...], str] = {}


def _key(env: dict[str, str], postgres_url: str | None, seeded: bool) -> tuple[object, ...]:
    settings = sorted(
        (name, value)
        for name, value in env.items()
        if name.startswith(("LEDGERCORE_", "DJANGO_", "DEVTOOLS_")) and name not in PER_DATABASE
    )
    return (postgres_url, seeded, tuple(settings))


def prepare(env: dict[str, str], postgres_url: str | None, seeded: bool, manage: Manage) -> None:
    """Make the database ``env`` points at (a new PostgreSQL database, or
    the SQLite file under its ``LEDGERCORE_VAR_DIR``): migrated, with the
    demo data when ``seeded``."""
    key = _key(env, postgres_url, seeded)
    template = _templates.get(key)
    if template is None:
        template = _templates[key] = _build(env, postgres_url, seeded, manage)
    if postgres_url:
        database = env["DATABASE_URL"].rsplit("/", 1)[1]
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    else:
        _copy_sqlite(Path(template), Path(env["LEDGERCORE_VAR_DIR"]) / SQLITE_NAME)
    if seeded:
        manage(env, "seed_demo")


def _build(env: dict[str, str], postgres_url: str | None, seeded: bool, manage: Manage) -> str:
    """A migrated (and seeded) template database; returns its name (PostgreSQL)
    or its file (SQLite)."""
    build = dict(env)
    if postgres_url:
        name = f"lc_template_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        atexit.register(_drop, postgres_url, name)
        build["DATABASE_URL"] = postgres_url.rsplit("/", 1)[0] + f"/{name}"
        build["LEDGERCORE_REDIS_PREFIX"] = f"lc-template-{uuid.uuid4().hex[:8]}"
    else:
        directory = Path(tempfile.mkdtemp(prefix="lc-template-"))
        atexit.register(shutil.rmtree, directory, True)
        build["LEDGERCORE_VAR_DIR"] = str(directory)
        name = str(directory / SQLITE_NAME)
    manage(build, "migrate", "--noinput", "-v", "0")
    if seeded:
        manage(build, "seed_demo")
    return name


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy (the template may be in WAL mode)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def _drop(postgres_url: str, name: str) -> None:
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass  # the server is gone: nothing to remove

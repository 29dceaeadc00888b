"""Real server processes for end-to-end tests: daphne, as ``make run`` runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port
from tests.wsclient import DEV_SECRET

ROOT = Path(__file__).resolve().parent.parent


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


class DaphneProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = env
        self.log_path = log_path
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaphneProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "ledgercore.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.http}/healthz", timeout=1):  # noqa: S310 - local server
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not answer /healthz:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Dies as a crashed process does: no disconnect handling at all."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def server_environment(tmp_path: Path, scaled: bool, **extra: str) -> Iterator[dict[str, str]]:
    """Environment for server subprocesses: a fresh migrated database of the
    current stack (SQLite file, or a new PostgreSQL database) with demo data."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        {
            "LEDGERCORE_VAR_DIR": str(tmp_path),
            "LEDGERCORE_DEV_JWT_SECRET": DEV_SECRET,
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "DEBUG",
            **extra,
        }
    )
    database = None
    if scaled:
        import psycopg
        from django.conf import settings

        database = f"lc_e2e_{uuid.uuid4().hex[:12]}"
        db = settings.DATABASES["default"]
        admin_url = f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        env["DATABASE_URL"] = admin_url.rsplit("/", 1)[0] + f"/{database}"
        env["REDIS_URL"] = settings.REDIS_URL
        env["LEDGERCORE_REDIS_PREFIX"] = f"{settings.LEDGERCORE_REDIS_PREFIX}-{uuid.uuid4().hex[:8]}"
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "seed_demo")
        yield env
    finally:
        if database is not None:
            import psycopg

            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

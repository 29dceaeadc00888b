"""Real server processes for end-to-end tests and benchmarks: the server
(``ledgercore.serve``: daphne draining on SIGTERM) as ``make run`` runs it,
on a fresh database of either stack."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import quote

import psycopg

from devtools import databases

ROOT = Path(__file__).resolve().parent.parent


def dev_django_secret() -> str:
    """This checkout's development Django secret key (scripts/dev-secret.sh)."""
    script = ROOT / "scripts" / "dev-secret.sh"
    return subprocess.run([str(script), "django"], check=True, capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


class ChildProcess:
    """A subprocess logging to ``log_path``: stopped with SIGTERM (killed if
    it overstays) or killed as a crashed process is."""

    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Returns the exit
        code (None if it had to be killed)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode if self.process else None

    def kill(self) -> None:
        """Dies as a crashed process does (SIGKILL): no cleanup at all."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class DaphneProcess(ChildProcess):
    """A server process. ``server_module`` is what runs it: ``ledgercore.serve``
    (daphne draining on SIGTERM, as ``make run``) or ``daphne`` itself."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        app: str = "ledgercore.asgi:application",
        server_module: str = "ledgercore.serve",
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.args = args
        self.app = app
        self.server_module = server_module
        self.env = env
        self.log_path = log_path
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaphneProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.server_module, "-b", "127.0.0.1", "-p", str(self.port), *self.args, self.app],
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

    def drain_seconds(self) -> float:
        return float(self.env.get("LEDGERCORE_DRAIN_SECONDS") or 10)

    def stop(self) -> int | None:
        """SIGTERM, as a deployment stops it: the server drains (up to
        LEDGERCORE_DRAIN_SECONDS) and exits; killed if it overstays. Returns
        the exit code (None if it had to be killed)."""
        return self.terminate(self.drain_seconds() + 5)


@contextmanager
def server_environment(
    tmp_path: Path,
    *,
    dev_secret: str,
    postgres_url: str | None = None,
    redis_url: str | None = None,
    redis_prefix: str = "lc",
    **extra: str,
) -> Iterator[dict[str, str]]:
    """Environment for server subprocesses: a fresh migrated database with demo
    data (``seed_demo``; not with ``DEVTOOLS_SEED_DEMO="0"`` in ``extra``,
    for a caller that seeds only what it needs): a SQLite file under
    tmp_path (embedded stack), or, given
    postgres_url (a maintenance database URL) and redis_url, a new PostgreSQL
    database dropped afterwards (scaled stack)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.setdefault("DJANGO_SECRET_KEY", dev_django_secret())
    env.update(
        {
            "LEDGERCORE_VAR_DIR": str(tmp_path),
            "LEDGERCORE_DEV_JWT_SECRET": dev_secret,
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    database = None
    if postgres_url:
        database = f"lc_tmp_{uuid.uuid4().hex[:12]}"
        env["DATABASE_URL"] = postgres_url.rsplit("/", 1)[0] + f"/{database}"
        env["REDIS_URL"] = redis_url or "redis://127.0.0.1:6379/0"
        env["LEDGERCORE_REDIS_PREFIX"] = f"{redis_prefix}-{uuid.uuid4().hex[:8]}"
    try:
        # Copied from a migrated (and seeded) template, then brought up to date.
        databases.prepare(env, postgres_url, env.get("DEVTOOLS_SEED_DEMO") != "0", manage)
        yield env
    finally:
        if database is not None and postgres_url:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# ``server_environment`` without the demo data: a database migrated and empty,
# much faster to make (DEVTOOLS_SEED_DEMO="0" stays in the environment it yields;
# no server process reads it).
migrated_environment = partial(server_environment, DEVTOOLS_SEED_DEMO="0")


class DbWorkerProcess(ChildProcess):
    """``manage.py db_worker`` (django_tasks_db) as a subprocess: the scaled
    stack's job runner, killable like a crashed machine."""

    def __init__(self, env: dict[str, str], log_path: Path, *, interval: float = 0.1) -> None:
        self.env = env
        self.log_path = log_path
        self.interval = interval
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DbWorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "db_worker",
                "--interval",
                str(self.interval),
                "--no-startup-delay",
                "--no-reload",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        time.sleep(0.2)
        if self.process.poll() is not None:
            raise RuntimeError(f"db_worker exited early:\n{self.logs()}")
        return self

    def stop(self) -> None:
        self.terminate(10)


def database_url(settings_dict: dict[str, object]) -> str:
    """A ``postgres://`` URL for a Django PostgreSQL settings dict (to point
    a subprocess at the database a test run created)."""
    user = quote(str(settings_dict.get("USER") or ""))
    password = settings_dict.get("PASSWORD")
    auth = f"{user}:{quote(str(password))}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"

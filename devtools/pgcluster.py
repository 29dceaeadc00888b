"""A PostgreSQL server of its own for fault tests and benchmarks: a fresh
cluster (initdb) in a temporary directory, served by pg_ctl on a free port,
that a test may stop, restart or kill without touching the shared server
other tests use.

Run as root, the cluster belongs to the ``postgres`` system user (PostgreSQL
refuses to run as root) and its commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

from devtools.servers import free_port


def postgres_bindir() -> Path:
    """The newest /usr/lib/postgresql/*/bin, else the folder of initdb on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if candidates:
        return Path(candidates[-1])
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found")
    return Path(os.path.realpath(initdb)).parent


class PostgresCluster:
    """``with PostgresCluster() as pg:`` initialises and starts a cluster;
    ``pg.url(name)`` is a URL for one of its databases (user ``postgres``,
    trust authentication on 127.0.0.1 only); ``stop()``/``start()`` take it
    down and bring it back on the same port with the same data."""

    def __init__(self, *, port: int | None = None, os_user: str = "postgres") -> None:
        self.bindir = postgres_bindir()
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="lc-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self._os_user = os_user if os.geteuid() == 0 else None
        if self._os_user is not None:
            shutil.chown(self.root, user=self._os_user)

    # --- commands --------------------------------------------------------

    def _command(self, name: str, *args: str) -> list[str]:
        command = [str(self.bindir / name), *args]
        if self._os_user is not None:
            return ["runuser", "-u", self._os_user, "--", *command]
        return command

    def _run(self, name: str, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            self._command(name, *args), check=False, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}\n{self.logs()}")

    def init(self) -> PostgresCluster:
        self._run(
            "initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"
        )
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "max_connections = 200\n"
                "shared_buffers = 32MB\n"
                # A cluster for tests: speed over surviving a power cut.
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )
        return self

    def start(self, timeout: float = 30) -> PostgresCluster:
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", str(int(timeout)), "start")
        self.wait_ready(timeout)
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: end every session and shut down cleanly; ``immediate``:
        as a crash (recovery at the next start)."""
        if self.running():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        result = subprocess.run(
            self._command("pg_ctl", "-D", str(self.datadir), "status"), check=False, capture_output=True, text=True
        )
        return result.returncode == 0

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # --- use -------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def logs(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            return self.init().start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

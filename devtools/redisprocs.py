"""Redis processes of a test's own, on free ports: a server (optionally a
replica) and Sentinels, to kill, restart and fail over without touching a
shared Redis. Used by fault tests and ``bench/recovery.py``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import psycopg
import redis

from devtools.servers import ChildProcess, free_port, manage

REDIS_SERVER = shutil.which("redis-server") or "redis-server"


def _ping(port: int, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis(port=port, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


class _Process(ChildProcess):
    port: int

    def _args(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self._args()[0]} exited early:\n{self.logs()}")
            if _ping(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis on port {self.port} did not answer:\n{self.logs()}")

    def stop(self) -> None:
        self.terminate(10)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **kwargs: object) -> object:
        return redis.Redis(port=self.port, decode_responses=True, **kwargs)  # type: ignore[arg-type]


class RedisServer(_Process):
    """``redis-server`` on a free port, without persistence (a restart loses
    everything, the harshest case) or ``persistent`` (append-only file synced
    on every write: a restart brings back everything, stale entries
    included), or a replica of another server."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        replica_of: RedisServer | None = None,
        persistent: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        self.replica_of = replica_of
        self.persistent = persistent

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
        ]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        return args

    def restart(self, down_for: float) -> None:
        """SIGKILL, stay down ``down_for`` seconds, start again on the same
        port (empty unless persistent)."""
        self.kill()
        time.sleep(down_for)
        self.start()

    def wait_synced(self, timeout: float = 15.0) -> None:
        """Wait until this replica reports its link to the primary up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.client().info("replication")  # type: ignore[attr-defined]
            if info.get("master_link_status") == "up":
                return
            time.sleep(0.1)
        raise RuntimeError(f"replica on port {self.port} did not sync:\n{self.logs()}")


class Sentinel(_Process):
    """``redis-server --sentinel`` watching one primary under ``master_name``
    with a short down-after (fast failover for tests)."""

    def __init__(
        self,
        workdir: Path,
        primary: RedisServer,
        *,
        master_name: str = "lcmaster",
        quorum: int = 1,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        self.port = free_port()
        self.dir = workdir / f"sentinel-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "sentinel.log"
        self.master_name = master_name
        config = self.dir / "sentinel.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {self.dir}",
                    f"sentinel monitor {master_name} 127.0.0.1 {primary.port} {quorum}",
                    f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
                    f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
                    f"sentinel parallel-syncs {master_name} 1",
                    "",
                ]
            )
        )
        self.config = config

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        return [REDIS_SERVER, str(self.config), "--sentinel"]

    def primary_port(self) -> int:
        host_port = self.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)  # type: ignore[attr-defined]
        return int(host_port[1])

    def wait_primary(self, port: int, timeout: float = 30.0) -> None:
        """Wait until this Sentinel names ``port`` as the primary."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.primary_port() == port:
                    return
            except Exception:  # noqa: BLE001, S110 - sentinel still starting
                pass
            time.sleep(0.1)
        raise RuntimeError(f"sentinel did not promote port {port}:\n{self.logs()}")

    def wait_replicas(self, count: int, timeout: float = 15.0) -> None:
        """Wait until this Sentinel has discovered ``count`` replicas (it
        cannot fail over before)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                replicas = self.client().execute_command("SENTINEL", "REPLICAS", self.master_name)  # type: ignore[attr-defined]
                if len(replicas) >= count:
                    return
            except Exception:  # noqa: BLE001, S110 - sentinel still starting
                pass
            time.sleep(0.1)
        raise RuntimeError(f"sentinel did not discover {count} replicas:\n{self.logs()}")


def room_presence(client: Any, prefix: str, room: str) -> tuple[int, dict[str, int]]:
    """(connections, {user: connections}) of a room as Redis holds them."""
    conns = client.hlen(f"{prefix}:room:{room}:conns")
    users = {user: int(n) for user, n in client.hgetall(f"{prefix}:room:{room}:users").items()}
    return int(conns), users


async def wait_presence(
    client: Any, prefix: str, room: str, conns: int, users: dict[str, int], timeout: float
) -> float:
    """Seconds until Redis holds exactly ``conns``/``users`` for ``room``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    seen: tuple[int, dict[str, int]] | None = None
    while loop.time() - start < timeout:
        try:
            seen = await asyncio.to_thread(room_presence, client, prefix, room)
        except Exception:  # noqa: BLE001 - Redis still starting
            seen = None
        if seen == (conns, users):
            return loop.time() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"presence of {room} is {seen}, expected {(conns, users)} within {timeout} s")


SETUP_USERS = """
from accounts import services
from accounts.models import Application
app, _ = Application.objects.get_or_create(id="{app}", defaults={{"name": "faults"}})
for i in range({count}):
    services.add_member(app, services.get_or_create_user(f"fu{{i}}"), role="admin" if i == 0 else "member")
"""


@contextlib.contextmanager
def fault_environment(
    tmp: Path, postgres_url: str, *, users: int, app: str, dev_secret: str, **extra: str
) -> Iterator[dict[str, str]]:
    """Environment for server processes on a new migrated PostgreSQL database
    (dropped afterwards; ``postgres_url`` names the maintenance database)
    with users fu0..fu<users-1>, members of application ``app`` (fu0 an
    admin, who may broadcast to it), and a Redis
    of its own for the setup (point the servers at another with
    ``with_redis``). The demo data of ``server_environment`` would take most
    of a fault test's time."""
    maintenance = postgres_url
    database = f"lc_tmp_{uuid.uuid4().hex[:12]}"
    seeding = RedisServer(tmp).start()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        {
            "LEDGERCORE_VAR_DIR": str(tmp),
            "LEDGERCORE_DEV_JWT_SECRET": dev_secret,
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": maintenance.rsplit("/", 1)[0] + f"/{database}",
            "REDIS_URL": seeding.url,
            "LEDGERCORE_REDIS_PREFIX": f"lcf-{uuid.uuid4().hex[:8]}",
            **extra,
        }
    )
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "shell", "-c", SETUP_USERS.format(app=app, count=users))
        yield env
    finally:
        seeding.stop()
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def with_redis(env: dict[str, str], redis_url: str, **extra: str) -> dict[str, str]:
    """``env`` pointed at another Redis, with a key prefix of its own."""
    return {**env, "REDIS_URL": redis_url, "LEDGERCORE_REDIS_PREFIX": f"lcf-{uuid.uuid4().hex[:8]}", **extra}

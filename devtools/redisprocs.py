"""Redis processes of a test's own, on free ports: a server (optionally a
replica) and Sentinels, to kill, restart and fail over without touching a
shared Redis. Used by fault tests and ``bench/recovery.py``."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Self

from devtools.servers import free_port

REDIS_SERVER = shutil.which("redis-server") or "redis-server"


def _ping(port: int, timeout: float = 0.5) -> bool:
    import redis

    try:
        client = redis.Redis(port=port, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


class _Process:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

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

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """Dies as a crashed server does (SIGKILL): no save, no goodbye."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **kwargs: object) -> object:
        import redis

        return redis.Redis(port=self.port, decode_responses=True, **kwargs)  # type: ignore[arg-type]


class RedisServer(_Process):
    """``redis-server`` on a free port, without persistence (a restart loses
    everything, the harshest case), or a replica of another server."""

    def __init__(self, workdir: Path, *, port: int | None = None, replica_of: RedisServer | None = None) -> None:
        self.port = port or free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        self.replica_of = replica_of

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
            "--appendonly",
            "no",
        ]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        return args

    def restart(self, down_for: float) -> None:
        """SIGKILL, stay down ``down_for`` seconds, start again on the same
        port (empty: nothing was persisted)."""
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
            except Exception:  # noqa: S110 - sentinel still starting
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
            except Exception:  # noqa: S110 - sentinel still starting
                pass
            time.sleep(0.1)
        raise RuntimeError(f"sentinel did not discover {count} replicas:\n{self.logs()}")

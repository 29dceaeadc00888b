"""The deployment files: the Grafana dashboard queries only series the
server exports, and (where a Docker daemon runs) the compose stack serves a
client through its load balancer."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from realtime import metrics

ROOT = Path(__file__).resolve().parent.parent.parent
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


@pytest.mark.django_db
def test_every_series_the_dashboard_queries_is_exported(client):
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bledgercore_[a-z_]+\b", target["expr"])
    }
    assert queried
    declared = set()
    for family in text_string_to_metric_families(client.get("/metrics").content.decode()):
        declared.add(family.name)
        declared.update(sample.name for sample in family.samples)
    for module_metric in (
        metrics.CONNECTIONS,
        metrics.EVENTS_IN,
        metrics.EVENTS_OUT,
        metrics.ERRORS,
        metrics.THROTTLED,
        metrics.OUTBOUND_BYTES,
        metrics.OUTBOUND_MAX_BYTES,
        metrics.SLOW_CLOSED,
        metrics.PUBLISH_SECONDS,
    ):
        for family in module_metric.describe():
            declared.add(family.name)
    from queryengine import metrics as query_metrics

    for family in (*query_metrics.QUERY_SECONDS.describe(), *query_metrics.QUERY_ROWS.describe()):
        declared.add(family.name)
    missing = {
        name for name in queried if name not in declared and not any(name.removesuffix(s) in declared for s in SUFFIXES)
    }
    assert not missing, f"the dashboard queries series nobody exports: {sorted(missing)}"


def base_images() -> list[str]:
    """The images the stack is built from or runs: FROM lines and image: keys."""
    found = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    found += re.findall(r"^\s+image:\s*(\S+)", (ROOT / "compose.yaml").read_text(), re.MULTILINE)
    return sorted({image for image in found if not image.startswith("ledgercore")})


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout)


def compose_unavailable() -> str | None:
    """Why the compose stack cannot run here (None: it can): no Docker CLI, no
    daemon, no compose plugin, or a base image neither present nor pullable."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    info = _run("docker", "info")
    if info.returncode != 0:
        return f"no Docker daemon answers: {info.stderr.strip().splitlines()[-1:] or info.stdout[-200:]}"
    if _run("docker", "compose", "version").returncode != 0:
        return "the Docker daemon answers but the compose plugin (docker compose) is missing"
    for image in base_images():
        if _run("docker", "image", "inspect", image).returncode == 0:
            continue
        pulled = _run("docker", "pull", image, timeout=600)
        if pulled.returncode != 0:
            reason = (pulled.stderr or pulled.stdout).strip().splitlines()[-1:]
            return f"the Docker daemon answers but base image {image} is not present and cannot be pulled: {reason}"
    return None


UNAVAILABLE = compose_unavailable()


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"the compose stack cannot be run: {UNAVAILABLE}")
def test_the_compose_stack_serves_a_client_through_the_load_balancer():
    import jwt
    from websockets.sync.client import connect

    secret = "compose-test-dev-jwt-secret-" + "x" * 20
    env = {
        **os.environ,
        "POSTGRES_PASSWORD": "compose-test-password",
        "DJANGO_SECRET_KEY": "compose-test-" + "k3y" * 20,
        "LEDGERCORE_DEV_JWT_SECRET": secret,
        "LEDGERCORE_PORT": "18000",
    }
    compose = ["docker", "compose", "-p", "ledgercore-test", "-f", str(ROOT / "compose.yaml")]
    try:
        subprocess.run([*compose, "up", "-d", "--build", "--wait"], check=True, env=env, timeout=900)
        token = jwt.encode({"sub": "compose_user", "exp": int(time.time()) + 600}, secret, algorithm="HS256")
        for _ in range(4):  # round robin: both server processes answer
            with connect("ws://127.0.0.1:18000/ws?token=" + token) as ws:
                assert json.loads(ws.recv(timeout=30))["event"] == "connected"
                ws.send(json.dumps({"event": "ping", "id": "p"}))
                while (frame := json.loads(ws.recv(timeout=30)))["event"] != "pong":
                    pass
                assert frame["id"] == "p"
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, timeout=300, check=False)

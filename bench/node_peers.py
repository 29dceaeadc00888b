"""The peers the benchmarks compare LedgerCore with (bench/peers/, one npm
package installed by ``make bench-peers``): ``socketio``, a Node.js
Socket.IO server, and ``ws``, a bare WebSocket server on ``ws`` speaking the
native protocol's ping, subscribe and broadcast. Each listens on a free
port; POST /broadcast sends an ``application_broadcast`` to
``application:app_bench``; with JWT_SECRET it verifies tokens as the project
does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from devtools.servers import free_port

PEERS_DIR = Path(__file__).resolve().parent / "peers"
PACKAGES = {"socketio": "socket.io", "ws": "ws"}
LABELS = {"socketio": "Node.js Socket.IO", "ws": "Node.js ws"}


def missing() -> str | None:
    """Why the peers cannot run here (None when they can)."""
    if shutil.which("node") is None:
        return "Node.js (node) is not on PATH"
    if not (PEERS_DIR / "node_modules" / ".installed").exists():
        return "the peers' npm packages are not installed: run `make bench-peers`"
    return None


def version(peer: str) -> str:
    """The installed version of the peer's npm package."""
    manifest = PEERS_DIR / "node_modules" / PACKAGES[peer] / "package.json"
    return str(json.loads(manifest.read_text())["version"])


def label(peer: str) -> str:
    return f"{LABELS[peer]} {version(peer)}"


def start(peer: str, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """The peer (``socketio`` or ``ws``) on a free port; ``extra_env`` (e.g.
    JWT_SECRET, which makes it verify tokens) added to its environment.
    Exits with how to install the peers when they are not installed."""
    reason = missing()
    if reason is not None:
        raise SystemExit(f"bench peers unavailable: {reason}")
    port = free_port()
    process = subprocess.Popen(
        ["node", f"{peer}.mjs"], cwd=PEERS_DIR, env={**os.environ, **(extra_env or {}), "PORT": str(port)}
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process, port
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the {LABELS[peer]} peer did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=10)

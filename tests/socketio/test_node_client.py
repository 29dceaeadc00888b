"""socket.io-client 4.8 (Node.js, installed from npm into .cache by this
test's setup) against the real server process: the issue's scenario, with
``socket.recovered`` after a brief transport drop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.servers import manage
from tests.socketio.clients import PROGRESS_SQL, QUERY_PRICE, socketio_server
from tests.stacks import scaled_stack
from tests.wsclient import dev_token

HERE = Path(__file__).parent / "node"
ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / ".cache" / "socketio-client-node"


@pytest.fixture(scope="session")
def node_client() -> Path:
    """socket.io-client installed (once) from npm under .cache."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("Node.js and npm are needed for the socket.io-client tests")
    INSTALL.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "package.json", INSTALL / "package.json")
    shutil.copy(HERE / "scenario.mjs", INSTALL / "scenario.mjs")
    if not (INSTALL / "node_modules" / "socket.io-client" / "package.json").exists():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INSTALL,
            check=True,
            env={**os.environ, "npm_config_cache": str(ROOT / ".cache" / "npm")},
            timeout=300,
        )
    return INSTALL


def test_socket_io_client_scenario(tmp_path, node_client):
    with socketio_server(tmp_path, scaled_stack()) as (server, env):
        token = manage(env, "issue_token", "demo_user", "--app", "app_demo").strip()
        result = subprocess.run(
            ["node", "scenario.mjs"],
            check=False,
            cwd=node_client,
            env={
                **os.environ,
                "SERVER_URL": server.http,
                "TOKEN": token,
                "TEAMMATE_TOKEN": dev_token("demo_teammate"),
                "SQL": PROGRESS_SQL,
            },
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{server.logs()[-3000:]}"
        out = json.loads(result.stdout.strip().splitlines()[-1])

    assert out["refusal"]["data"]["code"] == "UNAUTHORIZED"
    assert out["firstRecovered"] is False
    assert out["hello"]["userId"] == "demo_user"
    assert out["subscribed"] == {
        "event": "subscribed",
        "data": {"room": "application:app_demo", "subscriberCount": 1},
    }
    assert out["pong"]["event"] == "pong"
    assert out["queryAck"]["event"] == "query_started"
    names = out["queryEvents"]
    assert names[0] == "query_started" and names[-1] == "query_completed", names
    assert "query_progress" in names and "query_response" in names, names
    assert out["charged"]["newBalance"] == out["balance"]["newBalance"] - QUERY_PRICE
    # alice's socket is away (its session ended with the transport).
    assert out["teammateSubscribed"]["data"]["subscriberCount"] == 1
    # After the drop: recovered, and the missed room and user events arrived.
    assert out["recovered"] is True
    after = [name for name, _ in out["afterReconnect"]]
    assert "user_joined_room" in after and "credit_balance_updated" in after

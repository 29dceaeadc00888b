"""Structured logs over a real server process: with LOG_FORMAT=json every
line is a JSON object naming the request (event, id), the user, the
application and, for the request log, the duration; tokens never appear."""

from __future__ import annotations

import json
import time

from websockets.sync.client import connect

from devtools.servers import DaphneProcess
from tests.stacks import migrated_stack_env, scaled_stack
from tests.wsclient import dev_token


def json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_json_logs_name_the_request_user_application_and_duration_and_never_the_token(tmp_path):
    with migrated_stack_env(
        tmp_path, scaled_stack(), LOG_FORMAT="json", LEDGERCORE_REQUEST_LOG="1", LOG_LEVEL="INFO"
    ) as env:
        server = DaphneProcess(env, tmp_path / "d.log").start()
        token = dev_token("logged_user")
        try:
            with connect(f"{server.url}/ws?token={token}") as ws:
                hello = json.loads(ws.recv(timeout=15))
                assert hello["event"] == "connected"
                ws.recv(timeout=15)  # the balance
                ws.send(json.dumps({"event": "ping", "id": "ping-1"}))
                assert json.loads(ws.recv(timeout=10))["event"] == "pong"
                ws.send(json.dumps({"event": "subscribe", "data": {"room": "nowhere:x"}, "id": "bad-room"}))
                json.loads(ws.recv(timeout=10))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                lines = json_lines(server.logs())
                if sum(1 for line in lines if line.get("logger") == "ledgercore.requests") >= 2:
                    break
                time.sleep(0.2)
        finally:
            server.stop()
        logs = server.logs()
        lines = json_lines(logs)
        assert lines, logs[-2000:]
        for line in lines:
            assert {"time", "level", "logger", "message"} <= set(line), line
        requests = {line["request_id"]: line for line in lines if line["logger"] == "ledgercore.requests"}
        ping = requests["ping-1"]
        assert ping["event"] == "ping" and ping["message"] == "ping ok"
        assert ping["user"] == "logged_user"
        assert ping["application"] == hello["data"]["applicationId"]
        assert ping["sid"] == hello["data"]["sid"]
        assert isinstance(ping["duration_ms"], int | float) and ping["duration_ms"] >= 0
        assert requests["bad-room"]["event"] == "subscribe"
        assert token not in logs and token.split(".")[2] not in logs

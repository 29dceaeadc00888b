"""The real server as a subprocess (daphne, as ``make run`` runs it), driven
with a plain WebSocket client; and two server processes sharing Redis."""

from __future__ import annotations

import json
import time
import urllib.request
from contextlib import ExitStack

import pytest
from websockets.sync.client import connect

from devtools.servers import DaphneProcess, manage
from tests.stacks import scaled_stack, stack_env
from tests.wsclient import dev_token


def recv(ws, timeout: float = 10.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def hello(ws) -> dict:
    """connected, then the balance of the bound application, as PROTOCOL.md fixes."""
    first = recv(ws)
    second = recv(ws)
    assert first["event"] == "connected", first
    assert second["event"] == "credit_balance_updated", second
    assert second["data"]["applicationId"] == first["data"]["applicationId"]
    return first


def expect(ws, event: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        try:
            frame = recv(ws, max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            raise TimeoutError(f"no {event} in {timeout} s; got {seen[-5:]}") from None
        if frame["event"] == event:
            return frame
        if frame["event"] != "market_chart_live_update":
            seen.append(json.dumps(frame)[:300])


def test_daphne_serves_the_protocol_end_to_end_and_never_logs_tokens(tmp_path):
    with stack_env(tmp_path, scaled_stack()) as env:
        token = manage(env, "issue_token", "demo_user", "--app", "app_demo").strip()
        teammate = dev_token("demo_teammate")
        server = DaphneProcess(env, tmp_path / "daphne.log").start()
        try:
            with (
                connect(f"{server.url}/ws?token={token}") as alice,
                connect(f"{server.url}/ws", additional_headers={"Authorization": f"Bearer {teammate}"}) as bob,
            ):
                greeting = hello(alice)
                assert greeting["data"]["userId"] == "demo_user"
                assert greeting["data"]["applicationId"] == "app_demo"
                assert hello(bob)["event"] == "connected"

                alice.send(json.dumps({"event": "ping", "id": "p1"}))
                # The relay may push the seed's opening grant (committed
                # before this server started) at any point from here on.
                pong = expect(alice, "pong")
                assert pong["id"] == "p1"

                alice.send(json.dumps({"event": "subscribe", "data": {"room": "application:app_demo"}, "id": 1}))
                assert expect(alice, "subscribed")["data"] == {"room": "application:app_demo", "subscriberCount": 1}
                bob.send(json.dumps({"event": "subscribe", "data": {"room": "application:app_demo"}, "id": 2}))
                assert expect(bob, "subscribed")["data"]["subscriberCount"] == 2
                joined = expect(alice, "user_joined_room")
                assert joined["data"]["userId"] == "demo_teammate"

                alice.send("{not json")
                assert expect(alice, "validation_error")
            with connect(f"{server.url}/ws?token=expired.{token[7:]}") as rejected:
                assert recv(rejected)["data"]["code"] == "UNAUTHORIZED"
            with urllib.request.urlopen(f"{server.http}/readyz", timeout=10) as response:
                assert json.loads(response.read())["status"] == "ok"
        finally:
            server.stop()
        logs = server.logs()
        assert "WSCONNECT" in logs  # the access log is on...
        assert token not in logs and teammate not in logs  # ...and carries no token
        assert token.split(".")[2] not in logs


@pytest.mark.redis_stack
def test_two_processes_share_rooms_counts_and_presence_through_redis(tmp_path):
    with stack_env(tmp_path, True, LEDGERCORE_PRESENCE_TIMEOUT_SECONDS="2") as env:
        a = DaphneProcess(env, tmp_path / "a.log").start()
        b = DaphneProcess(env, tmp_path / "b.log").start()
        room = "application:app_demo"
        try:
            with ExitStack() as sockets, connect(f"{a.url}/ws?token={dev_token('demo_user')}") as on_a:
                assert hello(on_a)["event"] == "connected"
                on_a.send(json.dumps({"event": "subscribe", "data": {"room": room}}))
                assert expect(on_a, "subscribed")["data"]["subscriberCount"] == 1

                on_b = sockets.enter_context(connect(f"{b.url}/ws?token={dev_token('demo_teammate')}"))
                assert hello(on_b)["event"] == "connected"
                on_b.send(json.dumps({"event": "subscribe", "data": {"room": room}}))
                assert expect(on_b, "subscribed")["data"]["subscriberCount"] == 2  # counts both processes

                # a broadcast sent through process B reaches the subscriber on A
                joined = expect(on_a, "user_joined_room")
                assert joined["data"] == {
                    "userId": "demo_teammate",
                    "room": room,
                    "joinedAt": joined["data"]["joinedAt"],
                }

                on_b2 = sockets.enter_context(connect(f"{b.url}/ws?token={dev_token('demo_teammate')}"))
                hello(on_b2)
                on_b2.send(json.dumps({"event": "subscribe", "data": {"room": room}}))
                assert expect(on_b2, "subscribed")["data"]["subscriberCount"] == 3

                # process B dies without closing anything: its connections
                # leave within the presence timeout, announced once per user
                b.kill()
                killed_at = time.monotonic()
                left = expect(on_a, "user_left_room", timeout=30)
                assert left["data"]["userId"] == "demo_teammate"
                assert time.monotonic() - killed_at < 30
                on_a.send(json.dumps({"event": "subscribe", "data": {"room": room}}))
                assert expect(on_a, "subscribed")["data"]["subscriberCount"] == 1
                on_a.send(json.dumps({"event": "ping", "id": "after"}))
                frame = expect(on_a, "pong")
                assert frame["id"] == "after"
        finally:
            a.stop()
            b.stop()


CRASH_AFTER_COMMIT = """
import os
from django.db import transaction
from accounts import services as tenancy
from credits import services as credits
user = tenancy.get_or_create_user("crash_user")
with transaction.atomic():
    transaction.on_commit(lambda: os._exit(3))  # dies right after COMMIT, before any send
    credits.grant_credits(
        user.pk, user.default_application_id, 42, reason="before the crash", actor=credits.Actor.system()
    )
"""


def test_movement_committed_just_before_a_crash_is_pushed_once_the_server_is_back(tmp_path):
    import subprocess
    import sys

    from devtools.servers import ROOT

    with stack_env(tmp_path, scaled_stack(), LEDGERCORE_OUTBOX_RETRY_SECONDS="0.5") as env:
        crashed = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", CRASH_AFTER_COMMIT],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert crashed.returncode == 3, crashed.stderr
        pending = manage(
            env,
            "shell",
            "-c",
            (
                "from credits.models import OutboxEvent as O; "
                "print(O.objects.filter(delivered_at=None, entry__account__user__username='crash_user').count())"
            ),
        )
        assert pending.strip().splitlines()[-1] == "1"
        server = DaphneProcess(env, tmp_path / "daphne.log").start()
        try:
            with connect(f"{server.url}/ws?token={dev_token('crash_user')}") as ws:
                hello(ws)
                granted = expect(ws, "credits_granted", timeout=20)
                assert granted["data"]["amount"] == 42 and granted["data"]["sequence"] == 1
                assert granted["data"]["reason"] == "before the crash"
                balance = expect(ws, "credit_balance_updated", timeout=10)
                assert balance["data"]["newBalance"] == 42
        finally:
            server.stop()


def test_live_chart_frames_reach_every_daphne_socket_framed_once_and_in_order(tmp_path):
    """Under daphne a live chart update is framed once and written to each
    subscriber's socket directly (realtime.transport). Three subscribers of
    a 250ms chart of the demo feed's replay (about 35 trades a second): one
    drops its TCP connection mid-stream; the other two build the same
    chart, never see a bar older than the last, get the initial series
    before any update (the ASGI path and the direct path keep their order),
    and match the stored candles; the server still answers afterwards."""
    room = "market:XRP-ETH:250ms"
    with stack_env(
        tmp_path, scaled_stack(), LEDGERCORE_MARKET_DEMO_FEED="true", LEDGERCORE_MARKET_REPLAY_SPEED="600"
    ) as env:
        server = DaphneProcess(env, tmp_path / "daphne.log").start()
        try:
            sockets = [connect(f"{server.url}/ws?token={dev_token(f'chart_viewer{i}')}") for i in range(3)]
            charts: list[list[dict]] = []
            for ws in sockets:
                hello(ws)
                ws.send(json.dumps({"event": "subscribe", "data": {"room": room}, "id": "join"}))
                assert recv(ws)["event"] == "subscribed"
                initial = recv(ws)
                assert initial["event"] == "market_chart_initial_data", initial
                charts.append(list(initial["data"]["series"]))
            updates = [0, 0, 0]
            dropped = sockets[2]
            started = time.monotonic()
            while time.monotonic() - started < 3.0:
                if dropped is not None and time.monotonic() - started > 1.0:
                    dropped.socket.close()  # no closing handshake: the server finds out by writing
                    dropped = None
                for index, ws in enumerate(sockets[:2]):
                    try:
                        frame = json.loads(ws.recv(timeout=0.02))
                    except TimeoutError:
                        continue
                    assert frame["event"] == "market_chart_live_update", frame
                    bar = {
                        k: frame["data"][k] for k in ("timestamp", "open", "high", "low", "close", "volume", "trades")
                    }
                    chart = charts[index]
                    assert not chart or bar["timestamp"] >= chart[-1]["timestamp"], "a bar older than the last one"
                    if chart and chart[-1]["timestamp"] == bar["timestamp"]:
                        chart[-1] = bar
                    else:
                        chart.append(bar)
                    updates[index] += 1
            assert updates[0] > 5 and updates[1] > 5
            # Both charts from the later of their first bars, up to (not
            # including) the bar still forming, equal each other and the store.
            first = max(charts[0][0]["timestamp"], charts[1][0]["timestamp"])
            last = min(charts[0][-1]["timestamp"], charts[1][-1]["timestamp"])
            mine = [[bar for bar in chart if first <= bar["timestamp"] < last] for chart in charts[:2]]
            assert mine[0] == mine[1] and len(mine[0]) > 4
            window = {"from": first, "to": last}
            sockets[0].send(
                json.dumps(
                    {
                        "event": "request_market_data",
                        "data": {"symbol": "XRP-ETH", "resolution": "250ms", "window": window},
                    }
                )
            )
            stored = expect(sockets[0], "market_data_response")["data"]["candles"]
            assert mine[0] == [{k: c[k] for k in mine[0][0]} for c in stored]
            sockets[1].send(json.dumps({"event": "ping", "id": "after"}))
            assert expect(sockets[1], "pong")["id"] == "after"
            for ws in sockets[:2]:
                ws.close()
        finally:
            server.stop()

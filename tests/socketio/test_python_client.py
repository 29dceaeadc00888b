"""python-socketio's AsyncClient against the real server process (daphne,
demo data): the issue's scenario over HTTP long-polling upgraded to
WebSocket, and over long-polling only. A native WebSocket client shares the
application room."""

from __future__ import annotations

import asyncio
import json

import pytest
import socketio
import websockets

from devtools.servers import manage
from tests.socketio.clients import PROGRESS_SQL, QUERY_PRICE, Recorder, socketio_server
from tests.stacks import scaled_stack
from tests.wsclient import dev_token

ROOM = "application:app_demo"


async def native_request(ws, event: str, data: dict, request_id: str, timeout: float = 15.0) -> dict:
    """Send a native request; its first reply (other frames are skipped)."""
    await ws.send(json.dumps({"event": event, "data": data, "id": request_id}))
    while True:
        frame = json.loads(await _recv(ws, timeout))
        if frame.get("id") == request_id:
            return frame


async def _recv(ws, timeout: float) -> str:
    return await asyncio.wait_for(ws.recv(), timeout)


@pytest.mark.parametrize("transports", [None, ["polling"]], ids=["polling-then-websocket", "polling-only"])
async def test_python_socketio_client_scenario(tmp_path, transports):
    with socketio_server(tmp_path, scaled_stack()) as (server, env):
        token = manage(env, "issue_token", "demo_user", "--app", "app_demo").strip()
        teammate = dev_token("demo_teammate")
        url = server.http

        # 1. A bad token is refused with CONNECT_ERROR {message, data: {code}}.
        refused = Recorder()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(url, auth={"token": "not-a-token"}, transports=transports, wait_timeout=15)
        assert refused.refusal["data"]["code"] == "UNAUTHORIZED"
        assert refused.refusal["message"]
        await refused.disconnect()

        alice = Recorder()
        await alice.connect(url, auth={"token": token}, transports=transports, wait_timeout=15)
        assert alice.pid
        hello = await alice.wait_for("connected")
        assert hello["userId"] == "demo_user" and hello["applicationId"] == "app_demo"
        # 5 (at connect). The balance of the bound application.
        balance = await alice.wait_for("credit_balance_updated")
        assert balance["applicationId"] == "app_demo"

        # 2. An application room, counted across both dialects.
        ack = await alice.call("subscribe", {"room": ROOM}, timeout=15)
        assert ack == {"event": "subscribed", "data": {"room": ROOM, "subscriberCount": 1}}
        assert (await alice.wait_for("subscribed"))["subscriberCount"] == 1
        async with websockets.connect(f"{server.url}/ws?token={teammate}") as native:
            reply = await native_request(native, "subscribe", {"room": ROOM}, "s1")
            assert reply["data"] == {"room": ROOM, "subscriberCount": 2}
            joined = await alice.wait_for("user_joined_room", userId="demo_teammate")
            assert joined["room"] == ROOM

            # 3. ping/pong, acknowledged with the pong.
            ack = await alice.call("ping", {}, timeout=15)
            assert ack["event"] == "pong" and isinstance(ack["data"]["timestamp"], int)

            # 4. A query: started (the ack), progress, response, completed.
            ack = await alice.call("query", {"sql": PROGRESS_SQL}, timeout=30)
            assert ack["event"] == "query_started"
            query_id = ack["data"]["queryId"]
            done = await alice.wait_for("query_completed", timeout=60, queryId=query_id)
            assert done["totalRows"] == 1
            names = [e for e, args in alice.events if e.startswith("query_") and args[0].get("queryId") == query_id]
            assert names[0] == "query_started" and names[-1] == "query_completed", names
            assert "query_progress" in names and "query_response" in names, names

            # 5. The charge's credit event.
            await alice.wait_for("credit_balance_updated", newBalance=balance["newBalance"] - QUERY_PRICE)

            # 6. A brief disconnect; what was published meanwhile is recovered.
            pid, offset = alice.pid, alice.offset
            assert offset is not None
            await alice.disconnect()
            await native_request(native, "unsubscribe", {"room": ROOM}, "u1")
        async with websockets.connect(f"{server.url}/ws?token={token}") as alice_native:
            reply = await native_request(alice_native, "query", {"sql": "SELECT 1"}, "q1")
            assert reply["event"] == "query_started"
            spent = balance["newBalance"] - 2 * QUERY_PRICE
            while True:  # the second charge is captured: its credit event is in user:demo_user
                frame = json.loads(await _recv(alice_native, 15))
                if frame["event"] == "credit_balance_updated" and frame["data"]["newBalance"] == spent:
                    break

        back = Recorder()
        await back.connect(
            url, auth={"token": token, "pid": pid, "offset": offset}, transports=transports, wait_timeout=15
        )
        assert back.pid == pid  # recovered: socket.io-client sets socket.recovered
        left = await back.wait_for("user_left_room", userId="demo_teammate")
        assert left["room"] == ROOM
        await back.wait_for("credit_balance_updated", newBalance=spent)
        replayed = [args for name, args in back.events if name in ("user_left_room", "credit_balance_updated")]
        # Replayed events carry their recovery offset (their room position,
        # epoch:offset), in each room's order.
        positions: dict[str, list[int]] = {}
        for args in replayed:
            if len(args) == 2:
                epoch, _, offset = args[-1].rpartition(":")
                positions.setdefault(epoch, []).append(int(offset))
        assert positions and all(offsets == sorted(offsets) for offsets in positions.values())
        # Still in the room: a new member is announced.
        async with websockets.connect(f"{server.url}/ws?token={teammate}") as native:
            reply = await native_request(native, "subscribe", {"room": ROOM}, "s2")
            assert reply["data"]["subscriberCount"] == 2
            await back.wait_for("user_joined_room", userId="demo_teammate", timeout=15)
        await back.disconnect()


async def test_query_rows_reach_a_websocket_only_client_in_socketio_encoding(tmp_path):
    """Over a Socket.IO session opened on a WebSocket (no long-polling
    first), a query's chunks are Socket.IO events like every other reply,
    not native frames written straight to the socket."""
    with socketio_server(tmp_path, scaled_stack()) as (server, env):
        token = manage(env, "issue_token", "demo_user", "--app", "app_demo").strip()
        client = Recorder()
        await client.connect(server.http, auth={"token": token}, transports=["websocket"], wait_timeout=15)
        try:
            ack = await client.call("query", {"sql": "SELECT 1 AS one FROM trades LIMIT 3"}, timeout=30)
            query_id = ack["data"]["queryId"]
            done = await client.wait_for("query_completed", timeout=30, queryId=query_id)
            assert done["totalRows"] == 3
            chunks = [data for data in client.named("query_response") if data["queryId"] == query_id]
            assert [row for chunk in chunks for row in chunk["rows"]] == [[1], [1], [1]]
        finally:
            await client.disconnect()

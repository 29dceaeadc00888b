"""Socket.IO at /socket.io/ in the product configuration, over real sockets
(the ASGI app served by uvicorn): namespaces, refusals, the request
pipeline's errors as events and acks, maxPayload, the connect timeout."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
import websockets

from realtime import push
from socketio_gateway import recovery
from tests.wsclient import dev_token, unique


async def recv(ws, timeout: float = 10.0) -> str:
    while True:
        packet = await asyncio.wait_for(ws.recv(), timeout)
        if packet != "2":
            return packet
        await ws.send("3")


async def open_session(base: str) -> websockets.ClientConnection:
    ws = await websockets.connect(f"{base}/socket.io/?EIO=4&transport=websocket")
    handshake = json.loads((await recv(ws))[1:])
    assert handshake["upgrades"] == [] and handshake["maxPayload"] == 1_000_000
    return ws


async def connect_product(base: str, user: str) -> websockets.ClientConnection:
    ws = await open_session(base)
    await ws.send("40" + json.dumps({"token": dev_token(user)}))
    answer = await recv(ws)
    assert answer.startswith('40{"sid":'), answer
    assert set(json.loads(answer[2:])) == {"sid", "pid"}
    return ws


async def until(ws, prefix: str) -> str:
    while not (packet := await recv(ws)).startswith(prefix):
        pass
    return packet


@pytest.mark.django_db(transaction=True)
async def test_namespaces_refusals_and_request_errors(live_server_url):
    user = unique("sio")
    ws = await open_session(live_server_url)
    await ws.send("40/admin,")
    assert await recv(ws) == '44/admin,{"message":"Invalid namespace"}'
    await ws.send('40{"token":"nope"}')
    refusal = json.loads((await recv(ws))[2:])
    assert refusal["data"]["code"] == "UNAUTHORIZED" and refusal["message"] == refusal["data"]["message"]
    await ws.close()

    ws = await connect_product(live_server_url, user)
    connected = json.loads((await until(ws, '42["connected"'))[2:])
    assert connected[1]["userId"] == user
    # An unknown event, a payload that is not an object, an invalid payload
    # with an ack: the native errors, as events and acks.
    await ws.send('42["no_such_event",{}]')
    error = json.loads((await until(ws, '42["error"'))[2:])
    assert error[1]["code"] == "NOT_FOUND"
    await ws.send('427["subscribe",[1,2]]')
    ack = json.loads((await until(ws, "437"))[3:])
    assert ack[0]["event"] == "validation_error" and ack[0]["data"]["errors"] == {"data": ["Expected a JSON object."]}
    await ws.send('428["subscribe",{"room":"nonsense"}]')
    ack = json.loads((await until(ws, "438"))[3:])
    assert ack[0]["event"] == "validation_error" and ack[0]["data"]["event"] == "subscribe"
    await ws.send('429["subscribe",{"room":"user:someone-else"}]')
    ack = json.loads((await until(ws, "439"))[3:])
    assert ack[0]["event"] == "error" and ack[0]["data"]["code"] == "UNAUTHORIZED"
    # A client's disconnect of / leaves the session open; an event to a
    # namespace it left is ignored, a ping to the engine still answered.
    await ws.send("41")
    await ws.send('4210["ping",{}]')
    await ws.send("40/admin,")
    # (the error event that followed the last ack may come first)
    seen = [await recv(ws)]
    while not seen[-1].startswith("44"):
        seen.append(await recv(ws))
    assert seen[-1] == '44/admin,{"message":"Invalid namespace"}'
    assert not any(p.startswith(("4310", '42["pong"')) for p in seen), seen
    await ws.close()


@pytest.mark.django_db(transaction=True)
async def test_a_long_polling_body_over_max_payload_closes_the_session(live_server_url, settings):
    settings.LEDGERCORE_SOCKETIO_MAX_PAYLOAD = 2048
    http = live_server_url.replace("ws://", "http://")

    def call(method: str, sid: str | None = None, body: bytes | None = None) -> tuple[int, str]:
        url = f"{http}/socket.io/?EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")
        request = urllib.request.Request(url, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    status, text = await asyncio.to_thread(call, "GET")
    assert status == 200
    handshake = json.loads(text[1:])
    assert handshake["maxPayload"] == 2048 and handshake["upgrades"] == ["websocket"]
    sid = handshake["sid"]
    assert await asyncio.to_thread(call, "POST", sid, b"4" + b"x" * 3000) == (
        413,
        '{"code": 3, "message": "payload too large"}',
    )
    status, _ = await asyncio.to_thread(call, "GET", sid)
    assert status == 400
    # A sid this server never issued.
    status, text = await asyncio.to_thread(call, "GET", sid[:-4] + "0000")
    assert status == 400 and json.loads(text)["code"] == 1


@pytest.mark.django_db(transaction=True)
async def test_a_session_that_connects_no_namespace_is_closed(live_server_url, settings):
    settings.LEDGERCORE_SOCKETIO_CONNECT_TIMEOUT_MS = 300
    ws = await open_session(live_server_url)
    with pytest.raises(websockets.ConnectionClosed):
        await recv(ws, timeout=15)


@pytest.mark.django_db(transaction=True)
async def test_long_polling_from_a_page_of_another_origin(live_server_url, settings):
    settings.LEDGERCORE_ALLOWED_ORIGINS = ["https://app.example"]
    url = live_server_url.replace("ws://", "http://") + "/socket.io/?EIO=4&transport=polling"

    def call(method: str, origin: str) -> tuple[int, dict[str, str]]:
        headers = {"Origin": origin, "Access-Control-Request-Headers": "content-type"}
        request = urllib.request.Request(url, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}

    status, headers = await asyncio.to_thread(call, "OPTIONS", "https://elsewhere.example")
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in headers
    status, headers = await asyncio.to_thread(call, "GET", "https://app.example")
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert headers["access-control-allow-credentials"] == "true"


@pytest.mark.django_db(transaction=True)
async def test_throttles_and_charging_as_on_the_native_protocol(live_server_url, settings):
    settings.LEDGERCORE_THROTTLE_RATES = {**settings.LEDGERCORE_THROTTLE_RATES, "connection": "3/min"}
    settings.LEDGERCORE_PRICES = {"query": 2}
    ws = await connect_product(live_server_url, unique("poor"))
    # A user without credits: the query is refused, the ack says why.
    await ws.send('421["query",{"sql":"SELECT 1"}]')
    ack = json.loads((await until(ws, "431"))[3:])
    assert ack[0]["event"] == "insufficient_credits" and ack[0]["data"]["required"] == 2
    await ws.send('422["ping",{}]')
    assert json.loads((await until(ws, "432"))[3:])[0]["event"] == "pong"
    await ws.send('423["ping",{}]')
    assert json.loads((await until(ws, "433"))[3:])[0]["event"] == "pong"
    # The connection's bucket (3 a minute) is empty: throttled, not executed.
    await ws.send('424["ping",{}]')
    ack = json.loads((await until(ws, "434"))[3:])
    assert ack[0]["event"] == "rate_limit_error" and ack[0]["data"]["retryAfter"] >= 1
    await ws.close()


@pytest.mark.django_db(transaction=True)
async def test_events_published_together_reach_a_session_in_order_with_their_recovery_offsets(live_server_url):
    user = unique("siomany")
    ws = await connect_product(live_server_url, user)
    await until(ws, '42["connected"')
    await push.broadcast_many(f"user:{user}", [("batch_marker", {"n": n}) for n in range(5)])
    packets = [json.loads((await until(ws, '42["batch_marker"'))[2:]) for _ in range(5)]
    assert [packet[1] for packet in packets] == [{"n": n} for n in range(5)]
    positions = [recovery.parse_offset(packet[2]) for packet in packets]
    epoch, first = positions[0]  # type: ignore[misc]
    assert positions == [(epoch, first + n) for n in range(5)]
    await ws.close()

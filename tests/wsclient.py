"""A small WebSocket test client speaking the LedgerCore envelope."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from typing import Any

import jwt
import websockets

DEV_SECRET = "test-dev-secret-that-is-at-least-32-bytes-long"


def post_broadcast(http: str, application: str, owner: str, data: dict[str, Any], message: str = "m") -> dict[str, Any]:
    """POST /api/applications/<application>/broadcast as ``owner`` (a dev
    token); asserts 202 and returns what was sent."""
    request = urllib.request.Request(
        f"{http}/api/applications/{application}/broadcast",
        data=json.dumps({"message": message, "data": data}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {dev_token(owner)}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        sent: dict[str, Any] = json.loads(response.read())
        return sent


def dev_token(
    user_id: str, app: str | None = None, *, exp_in: int = 3600, secret: str = DEV_SECRET, **claims: Any
) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"sub": user_id, "iat": now, "nbf": now, "exp": now + exp_in, **claims}
    if app:
        body["app"] = app
    return jwt.encode(body, secret, algorithm="HS256")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class Client:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.backlog: list[dict[str, Any]] = []

    @classmethod
    async def connect(
        cls, base_url: str, token: str | None = None, *, query: str = "", headers: dict[str, str] | None = None
    ) -> Client:
        url = f"{base_url}/ws"
        params = []
        if token is not None:
            params.append(f"token={token}")
        if query:
            params.append(query)
        if params:
            url += "?" + "&".join(params)
        ws = await websockets.connect(url, additional_headers=headers or {}, max_size=None)
        return cls(ws)

    async def send(self, event: str, data: Any = None, id: Any = None) -> None:
        frame: dict[str, Any] = {"event": event}
        if data is not None:
            frame["data"] = data
        if id is not None:
            frame["id"] = id
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, raw: str | bytes) -> None:
        await self.ws.send(raw)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def expect(self, event: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The next frame named ``event`` (whose data matches ``match``); other
        frames received meanwhile are kept for later ``recv`` calls."""
        deadline = asyncio.get_running_loop().time() + timeout
        for index, frame in enumerate(self.backlog):
            if _matches(frame, event, match):
                return self.backlog.pop(index)
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {event} {match} within {timeout}s; got {self.backlog}")
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            except TimeoutError:
                raise AssertionError(f"no {event} {match} within {timeout}s; got {self.backlog}") from None
            if _matches(frame, event, match):
                return frame
            self.backlog.append(frame)

    async def nothing(self, within: float = 0.5) -> None:
        """Asserts that no frame arrives within ``within`` seconds."""
        assert not self.backlog, self.backlog
        try:
            frame = await asyncio.wait_for(self.ws.recv(), within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame}")

    async def request(self, event: str, data: Any = None, id: Any = None, timeout: float = 5.0) -> dict[str, Any]:
        """Send and return the next frame that carries this request's id."""
        request_id = id if id is not None else uuid.uuid4().hex[:12]
        await self.send(event, data, request_id)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            frame = json.loads(
                await asyncio.wait_for(self.ws.recv(), max(deadline - asyncio.get_running_loop().time(), 0.01))
            )
            if frame.get("id") == request_id:
                return frame
            self.backlog.append(frame)

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _matches(frame: dict[str, Any], event: str, match: dict[str, Any]) -> bool:
    return frame.get("event") == event and all(frame.get("data", {}).get(k) == v for k, v in match.items())


async def connected(base_url: str, user_id: str, app: str | None = None, **kwargs: Any) -> Client:
    """A connected, authenticated client whose ``connected`` event was read."""
    client = await Client.connect(base_url, dev_token(user_id, app), **kwargs)
    # Generous: the suite shares a 2-core machine with its own servers.
    frame = await client.recv(timeout=15)
    assert frame["event"] == "connected", frame
    client.hello = frame  # type: ignore[attr-defined]
    balance = await client.recv(timeout=15)
    assert balance["event"] == "credit_balance_updated", balance
    client.balance = balance  # type: ignore[attr-defined]
    return client


async def frames_until(client: Client, request_id: str, last: set[str], timeout: float = 10.0) -> list[dict[str, Any]]:
    """Frames carrying this request id, up to and including one of ``last``."""
    frames: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            frame = await client.recv(max(deadline - asyncio.get_running_loop().time(), 0.01))
            if frame.get("id") != request_id:
                others.append(frame)  # e.g. credit events: kept for later expect()
                continue
            frames.append(frame)
            if frame["event"] in last:
                return frames
    finally:
        client.backlog.extend(others)

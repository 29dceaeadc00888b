"""Key fetching never blocks: against a real JWKS server (threaded
http.server) that can be made to hold its requests, a token whose kid is
cached verifies while a fetch for an unknown kid is in flight; lookups of
unknown kids share one fetch and give up at CLERK_JWKS_TIMEOUT_SECONDS."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import websockets

from realtime import auth
from tests.keyserver import KeyServer
from tests.wsclient import Client

pytestmark = pytest.mark.django_db(transaction=True)
ISSUER = "https://clerk.example.test"


class SlowKeyServer(KeyServer):
    """A key server (tests.keyserver) whose tokens ISSUER issues."""

    def token(self, kid: str, **claims: Any) -> str:
        return super().token(kid, iss=ISSUER, **claims)


@pytest.fixture
def keys(settings):
    server = SlowKeyServer()
    server.add_key("key-1")
    settings.CLERK_JWKS_URL = server.url
    settings.CLERK_ISSUER = ISSUER
    settings.CLERK_JWT_KEY = ""
    settings.CLERK_JWKS_CACHE_SECONDS = 300
    settings.CLERK_JWKS_REFRESH_COOLDOWN_SECONDS = 0.0
    settings.CLERK_JWKS_TIMEOUT_SECONDS = 20.0
    auth.reset_key_sets()
    yield server
    auth.reset_key_sets()
    server.close()


async def connects(base_url: str, token: str) -> dict:
    client = await Client.connect(base_url, token)
    try:
        return await client.recv(timeout=30)
    finally:
        await client.close()


async def entered(server: SlowKeyServer) -> None:
    assert await asyncio.to_thread(server.entered.wait, 20), "the key server got no request"


async def test_a_cached_kid_verifies_while_unknown_kids_wait_for_a_slow_key_server(live_server_url, keys):
    assert (await connects(live_server_url, keys.token("key-1")))["event"] == "connected"
    assert keys.fetches == 1
    keys.add_key("key-2")  # rotation
    keys.slow()
    # More waiters than the event loop's default thread pool has threads:
    # waiting for keys must not hold one.
    waiting = [asyncio.create_task(connects(live_server_url, keys.token("key-2"))) for _ in range(12)]
    await entered(keys)
    for _ in range(3):
        frame = await connects(live_server_url, keys.token("key-1"))
        assert frame["event"] == "connected", frame
    assert keys.holding == 1 and not any(task.done() for task in waiting), "the slow fetch ended early"
    keys.release.set()
    frames = await asyncio.gather(*waiting)
    assert [frame["event"] for frame in frames] == ["connected"] * 12, frames
    assert keys.fetches == 2, "concurrent lookups of one unknown kid share one fetch"


async def test_a_key_server_that_does_not_answer_delays_unknown_kids_only_up_to_the_timeout(
    live_server_url, keys, settings
):
    settings.CLERK_JWKS_TIMEOUT_SECONDS = 1.0
    assert (await connects(live_server_url, keys.token("key-1")))["event"] == "connected"
    keys.add_key("key-2")
    keys.slow()
    client = await Client.connect(live_server_url, keys.token("key-2"))
    await entered(keys)
    assert (await connects(live_server_url, keys.token("key-1")))["event"] == "connected"
    frame = await client.recv(timeout=15)
    assert frame["event"] == "error" and frame["data"]["code"] == "UNAUTHORIZED", frame
    assert "could not be fetched" in frame["data"]["message"]
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert keys.holding == 1, "the rejection came from the timeout, not from the key server answering"
    keys.release.set()


async def test_a_failing_key_server_refuses_unknown_kids_and_keeps_the_cached_keys(live_server_url, keys):
    assert (await connects(live_server_url, keys.token("key-1")))["event"] == "connected"
    keys.add_key("key-2")
    keys.fail = True
    frame = await connects(live_server_url, keys.token("key-2"))
    assert frame["event"] == "error" and "could not be fetched" in frame["data"]["message"], frame
    assert (await connects(live_server_url, keys.token("key-1")))["event"] == "connected"
    assert keys.fetches == 2
    keys.fail = False
    assert (await connects(live_server_url, keys.token("key-2")))["event"] == "connected"


async def test_an_expired_key_set_keeps_verifying_while_it_is_refreshed(live_server_url, keys, settings):
    settings.CLERK_JWKS_CACHE_SECONDS = 0  # every use finds the set stale
    auth.reset_key_sets()
    assert (await connects(live_server_url, keys.token("key-1")))["event"] == "connected"
    keys.slow()
    assert (await connects(live_server_url, keys.token("key-1")))["event"] == "connected"
    await entered(keys)  # that use started a background refresh, which the server holds
    for _ in range(3):
        assert (await connects(live_server_url, keys.token("key-1")))["event"] == "connected"
    assert keys.holding == 1 and keys.fetches == 2, "one refresh in flight, nobody waiting on it"
    keys.release.set()


def test_the_unknown_kid_cooldown_holds_and_blocking_lookups_do_not_wait_on_each_other(keys):
    keys.add_key("key-2")
    key_set = auth.KeySet(keys.url, lifespan=300, cooldown=60, timeout=20)
    assert key_set.get("key-1") is not None
    result: dict[str, object] = {}

    def unknown() -> None:
        try:
            result["key"] = key_set.get("made-up")
        except auth.AuthenticationFailed as exc:
            result["error"] = str(exc)

    # Within the cooldown, an unknown kid is refused without a fetch.
    thread = threading.Thread(target=unknown)
    thread.start()
    thread.join(20)
    assert result == {"error": "token is signed with an unknown key"}
    assert keys.fetches == 1
    # Past it (a fresh set with no cooldown), a blocked lookup does not
    # hold up a cached one.
    key_set = auth.KeySet(keys.url, lifespan=300, cooldown=0, timeout=20)
    assert key_set.get("key-1") is not None
    keys.slow()
    result.clear()
    thread = threading.Thread(target=unknown)
    thread.start()
    assert keys.entered.wait(20)
    assert key_set.get("key-1") is not None
    assert thread.is_alive() and keys.holding == 1
    keys.release.set()
    thread.join(20)
    assert result == {"error": "token is signed with an unknown key"}

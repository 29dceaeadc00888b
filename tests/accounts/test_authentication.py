"""Connection authentication: dev HS256, Clerk RS256 through JWKS or PEM,
staff sessions; every failure is error UNAUTHORIZED then close 4401."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import jwt
import pytest
import websockets
from channels.db import database_sync_to_async
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from accounts.models import User
from realtime import auth
from tests.keyserver import KeyServer
from tests.wsclient import DEV_SECRET, Client, dev_token, unique

pytestmark = pytest.mark.django_db(transaction=True)


async def assert_rejected(base_url: str, token: str | None = None, **kwargs) -> dict:
    client = await Client.connect(base_url, token, **kwargs)
    frame = await client.recv()
    assert frame["event"] == "error"
    assert frame["data"]["code"] == "UNAUTHORIZED"
    assert frame["data"]["message"]
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    return frame


async def test_missing_token_is_rejected_with_4401(live_server_url):
    await assert_rejected(live_server_url)


async def test_expired_token_is_rejected(live_server_url):
    frame = await assert_rejected(live_server_url, dev_token(unique("u"), exp_in=-120))
    assert "expired" in frame["data"]["message"]


async def test_badly_signed_token_is_rejected(live_server_url):
    await assert_rejected(live_server_url, dev_token(unique("u"), secret="another-secret-of-at-least-32-bytes!!"))


async def test_alg_none_token_is_rejected(live_server_url):
    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = b64({"alg": "none", "typ": "JWT"}) + "." + b64({"sub": "mallory", "exp": int(time.time()) + 600}) + "."
    await assert_rejected(live_server_url, token)
    assert not await database_sync_to_async(User.objects.filter(username="mallory").exists)()


async def test_garbage_token_is_rejected(live_server_url):
    await assert_rejected(live_server_url, "not-a-jwt")


async def test_token_without_exp_is_rejected(live_server_url):
    token = jwt.encode({"sub": unique("u")}, DEV_SECRET, algorithm="HS256")
    await assert_rejected(live_server_url, token)


async def test_dev_tokens_are_refused_when_the_secret_is_unset(live_server_url, settings):
    settings.LEDGERCORE_DEV_JWT_SECRET = ""
    await assert_rejected(live_server_url, dev_token(unique("u")))


async def test_application_the_user_is_not_member_of_is_rejected(live_server_url):
    await assert_rejected(live_server_url, dev_token(unique("u"), app="app_not_mine"))


async def test_bearer_header_authenticates(live_server_url):
    user = unique("hdr")
    client = await Client.connect(live_server_url, headers={"Authorization": f"Bearer {dev_token(user)}"})
    frame = await client.recv()
    assert frame["event"] == "connected" and frame["data"]["userId"] == user
    await client.close()


async def test_unknown_subject_creates_user_with_default_application(live_server_url):
    user = unique("newbie")
    client = await Client.connect(live_server_url, dev_token(user))
    frame = await client.recv()
    record = await database_sync_to_async(User.objects.select_related("default_application").get)(username=user)
    assert record.default_application_id == frame["data"]["applicationId"]
    assert not record.has_usable_password()
    await client.close()


async def test_a_user_deactivated_after_connecting_is_refused_on_the_next_connection(live_server_url):
    user = unique("revoked")
    client = await Client.connect(live_server_url, dev_token(user))
    assert (await client.recv())["event"] == "connected"
    await client.close()
    await database_sync_to_async(lambda: User.objects.filter(username=user).update(is_active=False))()
    frame = await assert_rejected(live_server_url, dev_token(user))
    assert "deactivated" in frame["data"]["message"]


async def test_a_member_removed_from_an_application_is_refused_it_on_the_next_connection(live_server_url):
    from accounts import services
    from accounts.models import Application, Membership

    user = unique("member")

    def join_team() -> str:
        team = Application.objects.create(name="team")
        services.add_member(team, services.get_or_create_user(user))
        return team.id

    team = await database_sync_to_async(join_team)()
    client = await Client.connect(live_server_url, dev_token(user, app=team))
    assert (await client.recv())["data"]["applicationId"] == team
    await client.close()
    await database_sync_to_async(lambda: Membership.objects.filter(application_id=team).delete())()
    await assert_rejected(live_server_url, dev_token(user, app=team))


async def test_connection_outlives_token_expiry(live_server_url):
    client = await Client.connect(live_server_url, dev_token(unique("short"), exp_in=2))
    assert (await client.recv())["event"] == "connected"
    await asyncio.sleep(3)  # the token is checked once, at connect
    assert (await client.request("ping"))["event"] == "pong"
    await client.close()


# --- Clerk RS256 --------------------------------------------------------------


@pytest.fixture
def clerk(settings):
    server = KeyServer()
    server.add_key("key-1")
    settings.CLERK_JWKS_URL = server.url
    settings.CLERK_ISSUER = "https://clerk.example.test"
    settings.CLERK_AUTHORIZED_PARTIES = ["https://app.example.test"]
    settings.CLERK_JWKS_REFRESH_COOLDOWN_SECONDS = 1.0
    auth.reset_key_sets()
    yield server
    auth.reset_key_sets()
    server.close()


async def test_clerk_token_verified_through_jwks(live_server_url, clerk):
    token = clerk.token("key-1", iss="https://clerk.example.test", azp="https://app.example.test", sub="user_2abcDEF")
    client = await Client.connect(live_server_url, token)
    frame = await client.recv()
    assert frame["event"] == "connected" and frame["data"]["userId"] == "user_2abcDEF"
    await client.close()


async def test_jwks_is_cached_and_refetched_for_an_unknown_kid(live_server_url, clerk):
    iss = "https://clerk.example.test"
    for _ in range(3):
        client = await Client.connect(live_server_url, clerk.token("key-1", iss=iss))
        assert (await client.recv())["event"] == "connected"
        await client.close()
    assert clerk.fetches == 1
    clerk.add_key("key-2")  # rotation: a new kid appears
    await asyncio.sleep(1.1)  # past the refresh cooldown
    client = await Client.connect(live_server_url, clerk.token("key-2", iss=iss))
    assert (await client.recv())["event"] == "connected"
    await client.close()
    assert clerk.fetches == 2


async def test_unknown_kids_do_not_refetch_within_the_cooldown(live_server_url, clerk):
    iss = "https://clerk.example.test"
    client = await Client.connect(live_server_url, clerk.token("key-1", iss=iss))
    assert (await client.recv())["event"] == "connected"
    await client.close()
    clerk.add_key("made-up")
    for _ in range(3):
        await assert_rejected(live_server_url, clerk.token("made-up", iss=iss))
    assert clerk.fetches == 1


async def test_clerk_token_from_wrong_issuer_is_rejected(live_server_url, clerk):
    await assert_rejected(live_server_url, clerk.token("key-1", iss="https://evil.example.test"))


async def test_clerk_token_for_another_authorized_party_is_rejected(live_server_url, clerk):
    token = clerk.token("key-1", iss="https://clerk.example.test", azp="https://evil.example.test")
    await assert_rejected(live_server_url, token)


async def test_clerk_token_not_yet_valid_is_rejected(live_server_url, clerk):
    token = clerk.token("key-1", iss="https://clerk.example.test", nbf=int(time.time()) + 600)
    await assert_rejected(live_server_url, token)


async def test_clerk_token_expired_beyond_leeway_is_rejected(live_server_url, clerk):
    token = clerk.token("key-1", iss="https://clerk.example.test", exp=int(time.time()) - 60)
    await assert_rejected(live_server_url, token)


async def test_clerk_token_within_leeway_is_accepted(live_server_url, clerk):
    token = clerk.token("key-1", iss="https://clerk.example.test", exp=int(time.time()) - 2)
    client = await Client.connect(live_server_url, token)
    assert (await client.recv())["event"] == "connected"
    await client.close()


async def test_clerk_token_signed_by_unknown_key_is_rejected(live_server_url, clerk):
    stranger = KeyServer()
    stranger.add_key("key-1")  # same kid, different key
    try:
        await assert_rejected(live_server_url, stranger.token("key-1", iss="https://clerk.example.test"))
    finally:
        stranger.close()


async def test_hs256_token_with_rs256_public_key_confusion_is_rejected(live_server_url, settings):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    settings.CLERK_JWT_KEY = pem.decode()
    settings.LEDGERCORE_DEV_JWT_SECRET = ""
    # PyJWT refuses to HMAC-sign with a PEM key; build the forgery by hand.
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "mallory", "exp": int(time.time()) + 60}).encode())
    sig = b64(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    await assert_rejected(live_server_url, f"{head}.{body}.{sig}")


async def test_clerk_token_verified_with_pem_key(live_server_url, settings):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    settings.CLERK_JWT_KEY = pem.decode()
    settings.CLERK_JWKS_URL = ""
    settings.CLERK_ISSUER = ""
    token = jwt.encode({"sub": "user_pem", "exp": int(time.time()) + 60}, key, algorithm="RS256")
    client = await Client.connect(live_server_url, token)
    assert (await client.recv())["data"]["userId"] == "user_pem"
    await client.close()


# --- staff sessions -------------------------------------------------------------


@database_sync_to_async
def session_cookie(username: str, is_staff: bool) -> str:
    from django.test import Client as HttpClient

    user = User.objects.create(username=username, is_staff=is_staff)
    http = HttpClient()
    http.force_login(user)
    return http.cookies["sessionid"].value


async def test_staff_session_cookie_authenticates(live_server_url):
    name = unique("staff")
    cookie = await session_cookie(name, True)
    client = await Client.connect(
        live_server_url, headers={"Cookie": f"sessionid={cookie}", "Origin": "http://127.0.0.1:8000"}
    )
    frame = await client.recv()
    assert frame["event"] == "connected" and frame["data"]["userId"] == name
    await client.close()


async def assert_handshake_refused(base_url: str, token: str | None = None, **kwargs) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Client.connect(base_url, token, **kwargs)
    assert refused.value.response.status_code == 403


async def test_only_a_handshake_with_a_session_cookie_asks_the_database_for_its_session_user(
    live_server_url, monkeypatch
):
    import channels.auth

    looked_up = []
    get_user = channels.auth.get_user

    async def counted(scope):
        looked_up.append(scope["path"])
        return await get_user(scope)

    monkeypatch.setattr(channels.auth, "get_user", counted)
    client = await Client.connect(live_server_url, dev_token(unique("token")))
    assert (await client.recv())["event"] == "connected"
    await client.close()
    assert looked_up == []
    cookie = await session_cookie(unique("staff"), True)
    client = await Client.connect(
        live_server_url, headers={"Cookie": f"sessionid={cookie}", "Origin": "http://127.0.0.1:8000"}
    )
    assert (await client.recv())["event"] == "connected"
    await client.close()
    assert looked_up == ["/ws"]


async def test_staff_session_from_foreign_origin_is_rejected(live_server_url):
    cookie = await session_cookie(unique("staff"), True)
    await assert_handshake_refused(
        live_server_url, headers={"Cookie": f"sessionid={cookie}", "Origin": "https://evil.test"}
    )


async def test_a_page_of_another_origin_cannot_open_the_socket_even_with_a_token(live_server_url, settings):
    """Cross-site WebSocket hijacking: the Origin header decides, whatever
    the credentials; clients that send no Origin (not browsers) are not
    affected."""
    settings.LEDGERCORE_ALLOWED_ORIGINS = ["https://app.example.com"]
    token = dev_token(unique("origin"))
    await assert_handshake_refused(live_server_url, token, headers={"Origin": "https://evil.test"})
    for headers in ({"Origin": "https://app.example.com"}, {}):
        client = await Client.connect(live_server_url, token, headers=headers)
        assert (await client.recv(timeout=15))["event"] == "connected"
        await client.close()


async def test_non_staff_session_is_rejected(live_server_url):
    cookie = await session_cookie(unique("plain"), False)
    await assert_rejected(live_server_url, headers={"Cookie": f"sessionid={cookie}"})

"""REST endpoints with bearer tokens, and application broadcasts reaching
WebSocket subscribers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.wsclient import connected, dev_token, unique

pytestmark = pytest.mark.django_db(transaction=True)


def call(live_server_url: str, method: str, path: str, token: str | None, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        live_server_url.replace("ws://", "http://") + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_me_reports_user_bound_application_and_memberships(live_server_url):
    user = unique("rest")
    status, body = call(live_server_url, "GET", "/api/me", dev_token(user))
    assert status == 200
    assert body["userId"] == user
    assert body["applications"][0]["applicationId"] == body["applicationId"]
    assert body["applications"][0]["role"] == "owner"


async def test_rest_rejects_missing_and_bad_tokens(live_server_url):
    assert call(live_server_url, "GET", "/api/me", None)[0] in (401, 403)
    assert call(live_server_url, "GET", "/api/me", "garbage")[0] == 401
    assert call(live_server_url, "GET", "/api/me", dev_token(unique("x"), exp_in=-100))[0] == 401


async def test_owner_broadcast_reaches_every_member_subscribed_to_the_room(live_server_url, alice, colleague):
    owner, member, app = alice.username, colleague.username, alice.default_application_id
    listener = await connected(live_server_url, member)
    await listener.request("subscribe", {"room": f"application:{app}"})
    status, sent = call(
        live_server_url, "POST", f"/api/applications/{app}/broadcast", dev_token(owner), {"message": "Markets open"}
    )
    assert status == 202
    frame = await listener.expect("application_broadcast")
    assert frame["data"] == sent
    assert frame["data"]["message"] == "Markets open" and frame["data"]["sentBy"] == owner
    assert "id" not in frame
    await listener.close()


async def test_plain_members_and_outsiders_cannot_broadcast(live_server_url, alice, colleague, outsider):
    owner, member, app = alice.username, colleague.username, alice.default_application_id
    listener = await connected(live_server_url, owner)
    await listener.request("subscribe", {"room": f"application:{app}"})
    for sender in (member, outsider.username):
        status, body = call(
            live_server_url, "POST", f"/api/applications/{app}/broadcast", dev_token(sender), {"message": "hi"}
        )
        assert status == 403 and body["code"] == "UNAUTHORIZED"
    await listener.nothing()
    await listener.close()


async def test_invalid_broadcast_is_refused(live_server_url, alice):
    owner, app = alice.username, alice.default_application_id
    status, body = call(
        live_server_url, "POST", f"/api/applications/{app}/broadcast", dev_token(owner), {"message": ""}
    )
    assert status == 400 and "message" in body["errors"]

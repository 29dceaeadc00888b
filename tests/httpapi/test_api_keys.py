"""API keys: created in the admin (shown once, stored as a hash), the two
headers, scopes per view, binding to one application, revocation, expiry."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import apikeys
from accounts.models import ApiKey, ApiKeyScope, Application
from tests.factories import UserFactory, funded, team
from tests.wsclient import connected, unique

pytestmark = pytest.mark.django_db


def keyed(key: str, header: str = "x-api-key") -> APIClient:
    client = APIClient()
    if header == "x-api-key":
        client.credentials(HTTP_X_API_KEY=key)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def make_key(user, app: str, *scopes: str, **fields):
    return apikeys.create_key(
        name="server", user=user, application=Application.objects.get(pk=app), scopes=list(scopes), **fields
    )


def test_the_admin_shows_the_key_once_and_stores_only_its_hash(staff_client, alice):
    app = alice.default_application_id
    response = staff_client.post(
        "/admin/accounts/apikey/add/",
        {"name": "billing sync", "user": alice.pk, "application": app, "scopes": ["credits:read", "market:read"]},
    )
    assert response.status_code == 200, response.content[:2000]
    assert "no-store" in response["Cache-Control"]
    key = response.context["key"]
    assert key.startswith("lck_") and key in response.content.decode()
    stored = ApiKey.objects.get(name="billing sync")
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert stored.scopes == ["credits:read", "market:read"] and key.startswith(f"lck_{stored.prefix}_")
    assert all(key not in str(value) for value in ApiKey.objects.filter(pk=stored.pk).values().first().values())
    page = staff_client.get(f"/admin/accounts/apikey/{stored.pk}/change/").content.decode()
    listing = staff_client.get("/admin/accounts/apikey/").content.decode()
    assert key not in page and key not in listing and stored.prefix in listing
    # revoking from the list
    staff_client.post("/admin/accounts/apikey/", {"action": "revoke_keys", "_selected_action": [stored.pk]})
    assert ApiKey.objects.get(pk=stored.pk).revoked_at is not None
    assert keyed(key).get("/api/me").status_code == 401


def test_the_admin_refuses_a_key_for_an_application_the_user_is_not_in(staff_client, alice, outsider):
    response = staff_client.post(
        "/admin/accounts/apikey/add/",
        {"name": "wrong", "user": outsider.pk, "application": alice.default_application_id, "scopes": ["market:read"]},
    )
    assert response.status_code == 200 and "must be a member" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_both_headers_authenticate_as_the_keys_user_bound_to_its_application(alice):
    side = team(owner=alice, name="side").pk
    _, key = make_key(alice, side, "credits:read")
    for header in ("x-api-key", "authorization"):
        me = keyed(key, header).get("/api/me")
        assert me.status_code == 200 and me.json()["userId"] == alice.username
        assert me.json()["applicationId"] == side
    assert ApiKey.objects.get().last_used_at is not None


def test_scopes_are_checked_per_view():
    user, app = funded(unique("svc"), 10)
    _, key = make_key(user, app, "credits:read")
    client = keyed(key)
    entries = client.get("/api/credits/me/entries")
    assert entries.status_code == 200 and [e["amount"] for e in entries.json()["results"]] == [10]
    assert client.get("/api/market/candles", {"symbol": "BTC-USD", "resolution": "1m"}).status_code == 403
    assert client.post("/api/query/run", {"sql": "SELECT 1"}, format="json").status_code == 403
    assert client.get("/api/compliance/analyses/").status_code == 403
    assert client.post(f"/api/applications/{app}/broadcast", {"message": "hi"}, format="json").status_code == 403


def test_a_staff_users_key_does_not_reach_staff_only_endpoints():
    boss = UserFactory.create(username=unique("boss"), staff=True)
    _, key = make_key(boss, boss.default_application_id, *ApiKeyScope.values)
    assert keyed(key).get("/api/credits/reconciliation/").status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_a_key_broadcasts_only_to_its_own_application(live_server_url, alice, colleague):
    app = alice.default_application_id
    other = await database_sync_to_async(lambda: team(owner=alice, name="other").pk)()
    _, key = await database_sync_to_async(make_key)(alice, app, "broadcast")
    listener = await connected(live_server_url, colleague.username)
    await listener.request("subscribe", {"room": f"application:{app}"})
    refused, _ = post(live_server_url, f"/api/applications/{other}/broadcast", key, {"message": "hi"})
    assert refused == 403
    status, sent = post(live_server_url, f"/api/applications/{app}/broadcast", key, {"message": "hi"})
    assert status == 202 and sent["sentBy"] == alice.username
    frame = await listener.expect("application_broadcast")
    assert frame["data"] == sent
    await listener.close()


def post(live_server_url: str, path: str, key: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        live_server_url.replace("ws://", "http://") + path,
        method="POST",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_revoked_expired_unknown_and_orphaned_keys_are_refused(alice, colleague):
    app = alice.default_application_id
    revoked, revoked_key = make_key(alice, app, "credits:read")
    apikeys.revoke(revoked)
    _, expired_key = make_key(alice, app, "credits:read", expires_at=timezone.now() - timedelta(seconds=1))
    _, orphan_key = make_key(colleague, app, "credits:read")
    colleague.memberships.filter(application_id=app).delete()
    _, good = make_key(alice, app, "credits:read")
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for key in (revoked_key, expired_key, orphan_key, tampered, "lck_nope_nope", "garbage"):
        response = keyed(key).get("/api/credits/me/entries")
        assert response.status_code == 401, key
        assert response["WWW-Authenticate"]
    assert keyed(good).get("/api/credits/me/entries").status_code == 200


def test_unknown_scopes_are_refused_at_creation(alice):
    with pytest.raises(ValueError, match="unknown scopes"):
        make_key(alice, alice.default_application_id, "everything")


def test_keys_are_redacted_from_log_lines(alice):
    from realtime.logs import redact

    api_key, key = make_key(alice, alice.default_application_id, "market:read")
    secret = key.removeprefix(f"lck_{api_key.prefix}_")
    for line in (f"X-API-Key: {key}", f"Authorization: Api-Key {key}", f"called with {key}!"):
        cleaned = redact(line)
        assert secret not in cleaned and "[redacted]" in cleaned
    assert f"lck_{api_key.prefix}_" in redact(f"called with {key}")

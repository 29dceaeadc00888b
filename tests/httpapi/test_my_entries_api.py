"""GET /api/credits/me/entries: own entries of the bound application only."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from credits import services
from tests.factories import UserFactory, funded, team
from tests.wsclient import dev_token, unique

pytestmark = pytest.mark.django_db


def _client(username: str, app: str | None = None) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {dev_token(username, app)}")
    return client


def test_own_entries_of_the_bound_application_newest_first_and_paginated():
    me = unique("me")
    user, app = funded(me, 10, 20, 30)
    funded(unique("neighbour"), 99)
    side = team(user, name="side").pk
    services.grant_credits(user.pk, side, 5, reason="side", actor=services.Actor.system())
    body = _client(me).get("/api/credits/me/entries").json()
    assert [(e["amount"], e["applicationId"]) for e in body["results"]] == [(30, app), (20, app), (10, app)]
    page = _client(me).get("/api/credits/me/entries", {"page_size": 2}).json()
    assert [e["amount"] for e in page["results"]] == [30, 20] and page["next"]
    rest = _client(me).get(page["next"]).json()
    assert [e["amount"] for e in rest["results"]] == [10]
    bound = _client(me, side).get("/api/credits/me/entries").json()
    assert [(e["amount"], e["applicationId"]) for e in bound["results"]] == [(5, side)]
    assert _client(me).get("/api/credits/me/entries", {"type": "nope"}).status_code == 400
    assert _client(me).get("/api/credits/me/entries", {"type": "deduction"}).json()["results"] == []


def test_staff_see_only_their_own_entries_here():
    boss = UserFactory.create(username=unique("boss"), staff=True)
    funded(unique("someone"), 7)
    assert _client(boss.username).get("/api/credits/me/entries").json()["results"] == []


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "99999999999999999999"])
def test_instants_out_of_range_are_refused_not_server_errors(value):
    me = unique("edge")
    funded(me, 5)
    for path in ("/api/credits/me/entries", "/api/credits/entries/", "/api/credits/entries.csv"):
        for name in ("from", "to"):
            response = _client(me).get(path, {name: value})
            assert response.status_code == 400, (path, name, value)
            assert name in response.json()


def test_instants_in_any_offset_filter_in_utc():
    me = unique("tz")
    funded(me, 5)
    client = _client(me)
    assert [
        e["amount"]
        for e in client.get("/api/credits/me/entries", {"from": "2000-01-01T05:00:00+05:00"}).json()["results"]
    ] == [5]
    assert client.get("/api/credits/me/entries", {"to": "2000-01-01T00:00:00-01:00"}).json()["results"] == []

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

"""A broadcast to an application room POSTed to a server process that has
not yet served a WebSocket connection (embedded stack): nobody is in the
room, so it is accepted and reaches no one; it is not a server error. The
room works as usual once members connect."""

from __future__ import annotations

import json

from devtools.servers import manage
from tests.rawws import RawSocket, daphne  # noqa: F401 - daphne is a fixture
from tests.wsclient import dev_token, post_broadcast

SEED = """
from accounts import services
from accounts.models import Application, Membership
app, _ = Application.objects.get_or_create(id="app_fresh", defaults={"name": "fresh"})
services.add_member(app, services.get_or_create_user("fresh_owner"), Membership.Role.OWNER)
services.add_member(app, services.get_or_create_user("fresh_member"))
"""


def test_broadcast_before_any_connection_is_accepted_then_reaches_members(daphne):  # noqa: F811
    manage(daphne.env, "shell", "-c", SEED)
    body = post_broadcast(daphne.http, "app_fresh", "fresh_owner", {"marker": "before"}, "hello")
    assert body["applicationId"] == "app_fresh" and body["sentBy"] == "fresh_owner"

    raw = RawSocket.connect(daphne.port, dev_token("fresh_member"))
    raw.expect("connected")
    raw.send_text(json.dumps({"event": "subscribe", "data": {"room": "application:app_fresh"}, "id": "s"}))
    raw.expect("subscribed")
    post_broadcast(daphne.http, "app_fresh", "fresh_owner", {"marker": "after"}, "hello")
    got = raw.expect("application_broadcast")
    assert got["data"]["data"] == {"marker": "after"}, got
    raw.close()

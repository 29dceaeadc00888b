"""schemathesis against the served OpenAPI document (/api/schema/) of a live
server, with a valid bearer token: every operation answers what its
documentation says (status codes, content types, headers, bodies), never
a server error, and refuses what the documentation rules out. Examples are
limited to keep the run short.

``positive_data_acceptance`` (every schema-valid request succeeds) is not
checked: some rules are not expressible in OpenAPI (from before to, at most
N candles in a window, SQL that compiles, a funded balance), so such
requests answer a documented 400/402.

The operations are driven from the test body (rather than schemathesis'
pytest plugin) because the document is only served once the live server of
the session runs."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from websockets.sync.client import connect

from tests.factories import funded
from tests.wsclient import dev_token, unique

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = 15


def test_every_operation_matches_its_documentation(live_server_url):
    # A connection makes the server's loop the one the embedded channel
    # layer delivers on (a daphne process does that when it starts).
    with connect(f"{live_server_url}/ws?token={dev_token(unique('warmup'))}", open_timeout=30):
        pass
    user, _ = funded(unique("fuzz"), 100_000)
    headers = {"Authorization": f"Bearer {dev_token(user.username)}"}
    base = live_server_url.replace("ws://", "http://")
    schema = schemathesis.openapi.from_url(f"{base}/api/schema/", wait_for_schema=30)
    failures: dict[str, BaseException] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, timeout=60, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation is tried; all are reported
            failures[operation.label] = exc
    assert operations >= 10
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())

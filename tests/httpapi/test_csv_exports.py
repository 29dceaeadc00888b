"""Every CSV export is streamed: 20,000 ledger entries arrive complete and
correct from the ledger export and from a CSV query, over a real socket, as
a chunked body rather than one built in memory."""

from __future__ import annotations

import csv
import http.client
import io
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from credits.combining import Session
from credits.events import flush_dispatcher
from credits.ledger import append, locked_account
from credits.models import EntryKind, LedgerEntry
from credits.services import Actor
from queryengine.models import QueryLimits
from realtime.streaming import DEFAULT_BATCH
from tests.factories import funded
from tests.wsclient import dev_token, unique

pytestmark = pytest.mark.django_db(transaction=True)

# Several batches of the stream (realtime.streaming.DEFAULT_BATCH each).
ENTRIES = 4_000


def many_entries(username: str) -> tuple[int, str]:
    """The user's account with ENTRIES ledger entries, written by the ledger
    itself (hash chain, balances, outbox) in one transaction."""
    user, app = funded(username, 1)
    with transaction.atomic():
        session = Session(locked_account(user.pk, app), {})
        for index in range(ENTRIES - 1):
            append(
                session,
                EntryKind.GRANT,
                1 + index % 7,
                earned=1 + index % 7,
                action="grant",
                reason=f"bulk {index}",
                actor=Actor.system(),
            )
        session.account.save()
    # The entries' credit events are pushed after commit: let them go first.
    assert flush_dispatcher(300), "credit event dispatcher did not settle"
    return user.pk, app


def get_streamed(live_server_url: str, method: str, path: str, token: str, body: str | None = None):
    """(status, headers, body text, pieces read) over a plain HTTP/1.1 socket."""
    address = urlsplit(live_server_url.replace("ws://", "http://"))
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/csv"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    pieces = []
    while piece := response.read1(65536):
        pieces.append(piece)
    conn.close()
    return response.status, dict(response.getheaders()), b"".join(pieces).decode(), len(pieces)


def test_thousands_of_entries_stream_complete_from_the_ledger_and_query_csv(live_server_url):
    me = unique("exporter")
    user_pk, app = many_entries(me)
    stored = list(
        LedgerEntry.objects.filter(account__user_id=user_pk)
        .order_by("id")
        .values_list("id", "sequence", "amount", "balance_after", "hash", "prev_hash")
    )
    assert len(stored) == ENTRIES

    # The ledger export, in process: a streaming response read with a fixed
    # number of queries (one server-side cursor, no query per row).
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {dev_token(me, app)}")
    response = client.get("/api/credits/entries.csv")
    # An asynchronous body: the ASGI server sends it as it is read (a
    # synchronous one would be read whole into memory first).
    assert response.status_code == 200 and isinstance(response, StreamingHttpResponse) and response.is_async
    parts: list[bytes] = []

    body_parts = response.streaming_content
    assert isinstance(body_parts, AsyncIterator)

    async def read() -> None:
        async for part in body_parts:
            parts.append(part)

    with CaptureQueriesContext(connection) as queries:
        async_to_sync(read)()
    assert 1 <= len(queries) <= 3, [q["sql"][:80] for q in queries.captured_queries]
    assert len(parts) >= ENTRIES // DEFAULT_BATCH
    body = b"".join(parts).decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert len(rows) == ENTRIES + 1
    header = rows[0]
    got = [
        (
            int(r[header.index("id")]),
            int(r[header.index("sequence")]),
            int(r[header.index("amount")]),
            int(r[header.index("balanceAfter")]),
            r[header.index("hash")],
            r[header.index("prevHash")],
        )
        for r in rows[1:]
    ]
    assert got == stored

    # The same over a real socket: a chunked body, in many pieces.
    status, headers, text, pieces = get_streamed(live_server_url, "GET", "/api/credits/entries.csv", dev_token(me, app))
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in headers
    assert text == body and pieces > 1

    # A query's CSV: every row, streamed.
    QueryLimits.objects.create(application_id=app, max_rows=ENTRIES, default_limit=ENTRIES)
    sql = '{"sql": "SELECT sequence, amount, balance_after FROM credit_entries ORDER BY sequence"}'
    status, headers, text, pieces = get_streamed(live_server_url, "POST", "/api/query/run", dev_token(me, app), sql)
    assert status == 200, text[:500]
    assert headers["Content-Type"].startswith("text/csv")
    assert headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in headers and pieces > 1
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["sequence", "amount", "balance_after"]
    assert [tuple(int(v) for v in r) for r in rows[1:]] == [(s, a, b) for _, s, a, b, _, _ in stored]

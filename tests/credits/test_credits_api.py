"""REST read API of the credit ledger, reconciliation and its command."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as accounts
from accounts.models import Application
from credits import services
from credits.models import CreditAccount, LedgerEntry
from credits.reconcile import reconcile_accounts
from credits.services import Actor
from tests import factories

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def funded(username: str, grant: int = 100, deduct: int = 0):
    user, app = factories.funded(username, grant, reason="r")
    if deduct:
        services.deduct_credits(user.pk, app, deduct, action="query", actor=Actor.user(username))
    return user, app


def finance_user(username: str = "finance", staff: bool = True):
    user = factories.UserFactory.create(username=username, staff=staff)
    if not staff:
        user.user_permissions.add(
            Permission.objects.get(codename="view_ledgerentry", content_type__app_label="credits")
        )
        user = type(user).objects.get(pk=user.pk)  # fresh permission cache
    return user


def csv_rows(response) -> list[list[str]]:
    # An asynchronous body, as the ASGI server reads it (piece by piece).
    assert response.streaming and response.is_async

    async def read() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return list(csv.reader(io.StringIO(async_to_sync(read)().decode())))


# ------------------------------------------------------------ accounts


def test_anonymous_is_refused():
    client = APIClient()
    for path in ("/api/credits/accounts/", "/api/credits/entries/", "/api/credits/entries.csv"):
        assert client.get(path).status_code in (401, 403)


def test_user_sees_only_own_accounts():
    alice, alice_app = funded("alice", 100, 30)
    funded("bob", 50)
    body = client_for(alice).get("/api/credits/accounts/").json()
    assert len(body) == 1
    account = body[0]
    assert account["userId"] == "alice" and account["applicationId"] == alice_app
    assert (account["balance"], account["lifetimeEarned"], account["lifetimeSpent"], account["lastSequence"]) == (
        70,
        100,
        30,
        2,
    )
    assert set(account) == {
        "id",
        "userId",
        "applicationId",
        "balance",
        "lifetimeEarned",
        "lifetimeSpent",
        "expiring",
        "lastSequence",
        "updatedAt",
    }
    # A user filter cannot widen a non-finance caller's view.
    assert client_for(alice).get("/api/credits/accounts/?user=bob").json() == []


@pytest.mark.parametrize("staff", [True, False], ids=["staff", "permission"])
def test_finance_sees_all_accounts_and_filters(staff):
    alice, alice_app = funded("alice")
    _bob, bob_app = funded("bob", 50)
    team = Application.objects.create(name="team")
    services.grant_credits(alice.pk, team.id, 7, reason="r", actor=SYSTEM)
    client = client_for(finance_user(staff=staff))

    everyone = client.get("/api/credits/accounts/").json()
    assert {(a["userId"], a["applicationId"]) for a in everyone} == {
        ("alice", alice_app),
        ("alice", team.id),
        ("bob", bob_app),
    }
    by_user = client.get("/api/credits/accounts/", {"user": "alice"}).json()
    assert {a["applicationId"] for a in by_user} == {alice_app, team.id}
    by_app = client.get("/api/credits/accounts/", {"application": team.id}).json()
    assert [(a["userId"], a["balance"]) for a in by_app] == [("alice", 7)]
    both = client.get("/api/credits/accounts/", {"user": "bob", "application": team.id}).json()
    assert both == []


def test_a_null_character_in_a_text_filter_is_a_400_naming_the_filter():
    alice, _ = funded("alice")
    client = client_for(alice)
    for path in ("/api/credits/accounts/", "/api/credits/entries/", "/api/credits/entries.csv"):
        for name in ("user", "application"):
            response = client.get(path, {name: "al\x00ice"})
            assert response.status_code == 400, (path, name, response.status_code)
            assert name in json.loads(response.content), (path, name)


# ------------------------------------------------------------ entries


def test_user_sees_only_own_entries_with_all_fields():
    alice, alice_app = funded("alice", 100, 30)
    funded("bob", 50, 5)
    body = client_for(alice).get("/api/credits/entries/").json()
    results = body["results"]
    assert [(e["userId"], e["sequence"], e["type"], e["amount"]) for e in results] == [
        ("alice", 2, "deduction", -30),
        ("alice", 1, "grant", 100),
    ]
    deduction = results[0]
    entry = LedgerEntry.objects.get(pk=deduction["id"])
    assert deduction["applicationId"] == alice_app
    assert deduction["spent"] == 30 and deduction["balanceAfter"] == 70
    assert deduction["action"] == "query" and deduction["actorType"] == "user" and deduction["actorId"] == "alice"
    assert deduction["idempotencyKey"] == entry.idempotency_key
    assert deduction["reverses"] is None and deduction["hold"] is None
    assert deduction["prevHash"] == results[1]["hash"] and deduction["hash"] == entry.hash
    assert deduction["createdAt"]
    assert client_for(alice).get("/api/credits/entries/", {"user": "bob"}).json()["results"] == []


def test_finance_sees_all_entries_and_filters_work():
    _alice, alice_app = funded("alice", 100, 30)
    _bob, _bob_app = funded("bob", 50, 5)
    client = client_for(finance_user())

    assert len(client.get("/api/credits/entries/").json()["results"]) == 4
    assert {e["userId"] for e in client.get("/api/credits/entries/", {"user": "bob"}).json()["results"]} == {"bob"}
    by_app = client.get("/api/credits/entries/", {"application": alice_app}).json()["results"]
    assert {e["applicationId"] for e in by_app} == {alice_app} and len(by_app) == 2
    grants = client.get("/api/credits/entries/", {"type": "grant"}).json()["results"]
    assert sorted((e["userId"], e["amount"]) for e in grants) == [("alice", 100), ("bob", 50)]
    assert client.get("/api/credits/entries/", {"type": "nonsense"}).status_code == 400

    future = timezone.now() + timedelta(hours=1)
    past = timezone.now() - timedelta(hours=1)
    assert client.get("/api/credits/entries/", {"from": future.isoformat()}).json()["results"] == []
    assert len(client.get("/api/credits/entries/", {"from": past.isoformat()}).json()["results"]) == 4
    assert client.get("/api/credits/entries/", {"to": past.isoformat()}).json()["results"] == []
    epoch_ms = str(int(past.timestamp() * 1000))
    assert len(client.get("/api/credits/entries/", {"from": epoch_ms}).json()["results"]) == 4
    assert client.get("/api/credits/entries/", {"to": epoch_ms}).json()["results"] == []
    assert client.get("/api/credits/entries/", {"from": "yesterday"}).status_code == 400


def test_cursor_pagination_covers_every_entry_once():
    user, app = funded("alice", 1000)
    for n in range(11):
        services.deduct_credits(user.pk, app, 1 + n, action="query", actor=SYSTEM)
    client = client_for(user)
    seen: list[int] = []
    response = client.get("/api/credits/entries/", {"page_size": 5}).json()
    pages = 1
    assert response["next"]
    while True:
        seen.extend(e["id"] for e in response["results"])
        if not response["next"]:
            break
        response = client.get(response["next"]).json()
        pages += 1
    expected = list(LedgerEntry.objects.filter(account__user=user).order_by("-id").values_list("id", flat=True))
    assert pages == 3
    assert len(seen) == len(set(seen)) == 12
    assert seen == expected


# ------------------------------------------------------------ CSV


def test_csv_export_has_header_and_one_row_per_entry():
    alice, alice_app = funded("alice", 100, 30)
    funded("bob", 50)
    response = client_for(alice).get("/api/credits/entries.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment")
    rows = csv_rows(response)
    header = rows[0]
    assert header[:6] == ["id", "userId", "applicationId", "sequence", "type", "amount"]
    assert "hash" in header and "prevHash" in header
    assert len(rows) == 3
    records = [dict(zip(header, row, strict=True)) for row in rows[1:]]
    entries = list(LedgerEntry.objects.filter(account__user=alice).order_by("id"))
    for record, entry in zip(records, entries, strict=True):
        assert record["id"] == str(entry.pk)
        assert record["userId"] == "alice" and record["applicationId"] == alice_app
        assert record["type"] == entry.kind and record["amount"] == str(entry.amount)
        assert record["balanceAfter"] == str(entry.balance_after)
        assert record["hash"] == entry.hash and record["prevHash"] == entry.prev_hash
        assert record["reverses"] == "" and record["hold"] == ""
    assert [r["amount"] for r in records] == ["100", "-30"]


def test_csv_export_applies_filters_for_finance():
    funded("alice", 100, 30)
    funded("bob", 50)
    client = client_for(finance_user())
    assert len(csv_rows(client.get("/api/credits/entries.csv"))) == 4
    rows = csv_rows(client.get("/api/credits/entries.csv", {"type": "grant", "user": "bob"}))
    assert len(rows) == 2 and rows[1][1] == "bob" and rows[1][5] == "50"
    # An Accept header asking for CSV is honoured.
    assert client.get("/api/credits/entries.csv", HTTP_ACCEPT="text/csv").status_code == 200
    bad = client.get("/api/credits/entries.csv", {"from": "soon"})
    assert bad.status_code == 400 and "from" in bad.json()
    assert client.get("/api/credits/entries.csv", {"type": "x"}, HTTP_ACCEPT="text/csv").status_code == 400


# ------------------------------------------------------------ reconciliation


def full_history():
    user, app = funded("alice", 100, 30)
    deduction = LedgerEntry.objects.filter(account__user=user, kind="deduction").get()
    services.refund_credits(deduction.pk, reason="oops", actor=Actor.staff("finance"))
    hold = services.hold_credits(user.pk, app, 40, action="report", actor=SYSTEM)
    services.capture_hold(hold.pk, 25, actor=SYSTEM)
    hold = services.hold_credits(user.pk, app, 10, action="report", actor=SYSTEM)
    services.release_hold(hold.pk, actor=SYSTEM)
    services.adjust_credits(user.pk, app, -5, reason="correction", actor=Actor.staff("finance"))
    funded("bob", 50, 5)
    accounts.get_or_create_user("carol")  # a user without an account
    return user, app


def test_reconciliation_is_ok_on_a_clean_ledger():
    full_history()
    reports = reconcile_accounts()
    assert len(reports) == 2 and all(r.ok for r in reports), [r.problems for r in reports]
    alice = next(r for r in reports if r.user_id == "alice")
    assert alice.balance == alice.entries_sum == 70 and alice.last_sequence == 8
    body = client_for(finance_user()).get("/api/credits/reconciliation/").json()
    assert body == {"ok": True, "accounts": 2, "failures": []}


def test_reconciliation_is_for_finance_only():
    user, _ = funded("alice")
    assert client_for(user).get("/api/credits/reconciliation/").status_code == 403


def test_reconciliation_reports_an_altered_balance():
    user, app = full_history()
    CreditAccount.objects.filter(user=user, application_id=app).update(balance=999)
    body = client_for(finance_user()).get("/api/credits/reconciliation/").json()
    assert body["ok"] is False and body["accounts"] == 2
    [failure] = body["failures"]
    assert failure["user_id"] == "alice" and failure["application_id"] == app
    assert failure["balance"] == 999 and failure["entries_sum"] == 70 and failure["ok"] is False
    assert any("sum of entries" in problem for problem in failure["problems"])


def test_reconciliation_reports_altered_lifetimes_sequence_and_last_hash():
    user, app = funded("alice", 100, 30)
    CreditAccount.objects.filter(user=user, application_id=app).update(
        lifetime_spent=1, last_sequence=5, last_hash="f" * 64
    )
    [report] = reconcile_accounts()
    assert not report.ok
    text = " ".join(report.problems)
    assert "lifetime_spent" in text and "last_sequence" in text and "last_hash" in text


def test_reconcile_ledger_command():
    user, app = full_history()
    out = io.StringIO()
    call_command("reconcile_ledger", stdout=out)
    assert "2 accounts checked, 0 failing" in out.getvalue()
    out = io.StringIO()
    call_command("reconcile_ledger", "--json", stdout=out)
    assert [r["ok"] for r in json.loads(out.getvalue())] == [True, True]

    CreditAccount.objects.filter(user=user, application_id=app).update(balance=1)
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("reconcile_ledger", stdout=out)
    assert "alice" in out.getvalue() and "1 failing" in out.getvalue()
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("reconcile_ledger", "--json", stdout=out)
    reports = json.loads(out.getvalue())
    assert [r["ok"] for r in reports if r["user_id"] == "alice"] == [False]


# ------------------------------------------------------------ schema


def test_openapi_schema_lists_the_credit_endpoints():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    text = response.content.decode()
    assert "/api/credits/entries/" in text
    assert "/api/credits/entries.csv" in text and "/api/credits/reconciliation/" in text

"""Staff move credits only through admin actions that write ledger entries."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from credits import services
from credits.models import CreditAccount, CreditBlock, LedgerEntry
from credits.services import Actor
from tests.factories import AdminFactory, GrantFactory, UserFactory
from tests.wsclient import connected, unique


def staff_client() -> HttpClient:
    http = HttpClient()
    http.force_login(AdminFactory.create(username=unique("finance")))
    return http


def account_for(user_id: str) -> CreditAccount:
    user = UserFactory.create(username=user_id)
    GrantFactory.create(user=user, amount=1, reason="opening")
    return CreditAccount.objects.get(user=user)


def post_action(http: HttpClient, account: CreditAccount, action: str, **form: object):
    return http.post(
        reverse("admin:credits_creditaccount_changelist"),
        {"action": action, "_selected_action": [account.pk], "apply": "1", **form},
    )


@pytest.mark.django_db
def test_admin_grant_writes_an_entry_with_the_staff_member_as_actor():
    http = staff_client()
    account = account_for(unique("cust"))
    response = post_action(http, account, "grant_credits", amount=500, reason="goodwill")
    assert response.status_code == 302
    entry = LedgerEntry.objects.filter(account=account).latest("sequence")
    assert (entry.kind, entry.amount, entry.reason, entry.actor_type, entry.action) == (
        "grant",
        500,
        "goodwill",
        "staff",
        "admin_grant",
    )
    account.refresh_from_db()
    assert account.balance == 501


@pytest.mark.django_db
def test_admin_grant_without_reason_writes_nothing():
    http = staff_client()
    account = account_for(unique("cust"))
    response = post_action(http, account, "grant_credits", amount=500, reason="  ")
    assert response.status_code == 200  # the form again, with its error
    assert LedgerEntry.objects.filter(account=account).count() == 1


@pytest.mark.django_db
def test_admin_grant_with_an_expiry_date_opens_a_block_shown_in_admin():
    http = staff_client()
    account = account_for(unique("cust"))
    expires = (timezone.now() + timedelta(days=30)).replace(second=0, microsecond=0)
    response = post_action(
        http, account, "grant_credits", amount=70, reason="trial", expires_at=expires.strftime("%Y-%m-%d %H:%M")
    )
    assert response.status_code == 302
    block = CreditBlock.objects.get(account=account)
    assert (block.amount, block.remaining, block.expires_at) == (70, 70, expires)
    account.refresh_from_db()
    assert (account.balance, account.expiring) == (71, 70)
    assert http.get(reverse("admin:credits_creditblock_changelist")).status_code == 200
    assert http.get(reverse("admin:credits_creditblock_change", args=[block.pk])).status_code == 200
    # An adjustment cannot expire.
    post_action(http, account, "adjust_credits", amount=5, reason="fix", expires_at=expires.strftime("%Y-%m-%d %H:%M"))
    assert LedgerEntry.objects.filter(account=account).count() == 2


@pytest.mark.django_db
def test_ledger_entries_cannot_be_added_changed_or_deleted_in_admin():
    http = staff_client()
    entry = LedgerEntry.objects.filter(account=account_for(unique("cust"))).get()
    assert http.get(reverse("admin:credits_ledgerentry_add")).status_code == 403
    assert http.post(reverse("admin:credits_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    page = http.get(reverse("admin:credits_ledgerentry_change", args=[entry.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_a_grant_made_in_admin_reaches_the_open_socket(live_server_url):
    user_id = unique("watcher")
    account = await database_sync_to_async(account_for)(user_id)
    client = await connected(live_server_url, user_id)
    http = await database_sync_to_async(staff_client)()
    response = await database_sync_to_async(post_action)(http, account, "grant_credits", amount=99, reason="promo")
    assert response.status_code == 302
    # The opening grant's own event may still be in flight (at least once,
    # in sequence order per account): the admin grant is sequence 2.
    granted = await client.expect("credits_granted", sequence=2)
    assert (granted["data"]["amount"], granted["data"]["newBalance"], granted["data"]["reason"]) == (99, 100, "promo")
    balance = await client.expect("credit_balance_updated", sequence=2)
    assert balance["data"]["lifetimeEarned"] == 100
    await client.close()


@pytest.mark.django_db
def test_a_users_admin_page_links_to_their_ledger_export_and_reconciliation(client):
    staff = UserFactory.create(username=unique("finance"), is_staff=True, is_superuser=True)
    payer, other = UserFactory.create(username=unique("payer")), UserFactory.create(username=unique("other"))
    services.grant_credits(payer.pk, payer.default_application_id, 40, reason="r", actor=Actor.system())
    services.grant_credits(other.pk, other.default_application_id, 7, reason="r", actor=Actor.system())
    client.force_login(staff)
    page = client.get(f"/admin/accounts/user/{payer.pk}/change/").content.decode()
    links = {label: href.replace("&amp;", "&") for href, label in re.findall(r'<a href="([^"]+)">([^<]+)</a>', page)}
    for label in ("Ledger entries", "Credit accounts", "Ledger CSV export", "Reconciliation report"):
        assert label in links, links
    entries = client.get(links["Ledger entries"])
    assert entries.status_code == 200
    listed = entries.content.decode()
    assert payer.username in listed and other.username not in listed
    assert client.get(links["Credit accounts"]).status_code == 200
    assert client.get(links["Reconciliation report"]).status_code == 200
    # The CSV export, with the staff member's admin session: the payer's
    # entries only, as a streamed (asynchronous) body.
    export = client.get(links["Ledger CSV export"])
    assert export.status_code == 200 and export.streaming and export.is_async

    async def read() -> str:
        return b"".join([part async for part in export.streaming_content]).decode()

    rows = list(csv.reader(io.StringIO(async_to_sync(read)())))
    assert [(row[1], row[5]) for row in rows[1:]] == [(payer.username, "40")]

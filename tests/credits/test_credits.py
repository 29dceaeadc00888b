"""The credit ledger: movements, database guarantees, events over a real
WebSocket, the registry's charging path, durable delivery."""

from __future__ import annotations

import asyncio
import io
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services as accounts
from credits import services
from credits.balances import get_balances
from credits.events import PUBLISH_EVENTS, events_for, flush_dispatcher
from credits.ledger import GENESIS_HASH, entry_hash
from credits.models import CreditAccount, CreditBlock, EntryKind, LedgerEntry, OutboxEvent, Price
from credits.reconcile import reconcile_account
from credits.relay import relay_once
from credits.services import Actor
from realtime import redis as lcredis
from realtime.rooms import group_name
from tests.factories import UserFactory, funded
from tests.wsclient import connected, unique

SYSTEM = Actor.system()


def new_user(prefix: str = "payer"):
    user = UserFactory.create(username=unique(prefix))
    return user, user.default_application_id


def entries_of(user, app) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(account__user=user, account__application_id=app).order_by("sequence"))


@pytest.mark.django_db
class TestMovements:
    def test_grant_and_deduct_keep_balance_lifetimes_and_sequence(self):
        user, app = new_user()
        services.grant_credits(user.pk, app, 100, reason="welcome", actor=SYSTEM)
        services.deduct_credits(user.pk, app, 30, action="query", actor=Actor.user(user.username))
        balance = services.get_balance(user.pk, app)
        assert (balance.balance, balance.lifetime_earned, balance.lifetime_spent, balance.sequence) == (70, 100, 30, 2)
        kinds = [(e.kind, e.amount, e.balance_after, e.sequence) for e in entries_of(user, app)]
        assert kinds == [("grant", 100, 100, 1), ("deduction", -30, 70, 2)]

    def test_many_balances_are_read_in_one_statement_each_as_it_would_be_alone(self):
        (rich, rich_app), (spender, spender_app), (empty, empty_app) = new_user(), new_user(), new_user()
        services.grant_credits(rich.pk, rich_app, 100, reason="welcome", actor=SYSTEM)
        services.grant_credits(spender.pk, spender_app, 50, reason="welcome", actor=SYSTEM)
        services.deduct_credits(spender.pk, spender_app, 20, action="query", actor=Actor.user(spender.username))
        accounts_read = [(rich.pk, rich_app), (empty.pk, empty_app), (spender.pk, spender_app), (rich.pk, rich_app)]
        with CaptureQueriesContext(connection) as queries:
            balances = get_balances(accounts_read)
        assert len(queries) == 1
        assert balances == [services.get_balance(user_pk, app) for user_pk, app in accounts_read]
        assert [(b.application_id, b.balance, b.lifetime_spent, b.sequence) for b in balances] == [
            (rich_app, 100, 0, 1),
            (empty_app, 0, 0, 0),
            (spender_app, 30, 20, 2),
            (rich_app, 100, 0, 1),
        ]
        # An account of another application of the same user is another balance.
        assert get_balances([(rich.pk, spender_app)])[0].balance == 0

    def test_deduction_beyond_balance_is_refused_and_writes_nothing(self):
        user, app = new_user()
        services.grant_credits(user.pk, app, 10, reason="r", actor=SYSTEM)
        with pytest.raises(services.InsufficientCredits) as refused:
            services.deduct_credits(user.pk, app, 11, action="query", actor=SYSTEM)
        assert (refused.value.required, refused.value.available) == (11, 10)
        assert len(entries_of(user, app)) == 1

    def test_replayed_idempotency_key_returns_the_original_and_writes_nothing(self):
        user, app = new_user()
        services.grant_credits(user.pk, app, 100, reason="r", actor=SYSTEM)
        first = services.deduct_credits(user.pk, app, 5, action="query", actor=SYSTEM, idempotency_key="req-1")
        again = services.deduct_credits(user.pk, app, 5, action="query", actor=SYSTEM, idempotency_key="req-1")
        assert again.pk == first.pk
        assert services.get_balance(user.pk, app).balance == 95
        assert len(entries_of(user, app)) == 2

    def test_refund_reverses_a_deduction_once(self):
        user, app = new_user()
        services.grant_credits(user.pk, app, 50, reason="r", actor=SYSTEM)
        spent = services.deduct_credits(user.pk, app, 20, action="query", actor=SYSTEM)
        refund = services.refund_credits(spent.pk, reason="server failure", actor=SYSTEM)
        assert refund.reverses_id == spent.pk and refund.amount == 20
        assert services.refund_credits(spent.pk, reason="again", actor=SYSTEM).pk == refund.pk
        balance = services.get_balance(user.pk, app)
        assert (balance.balance, balance.lifetime_spent) == (50, 0)

    def test_hold_then_capture_charges_the_real_cost_and_returns_the_rest(self):
        user, app = new_user()
        services.grant_credits(user.pk, app, 100, reason="r", actor=SYSTEM)
        hold = services.hold_credits(user.pk, app, 40, action="address_analysis", actor=SYSTEM)
        assert services.get_balance(user.pk, app).balance == 60
        capture = services.capture_hold(hold.pk, 25, actor=SYSTEM)
        assert (capture.kind, capture.amount, capture.spent, capture.balance_after) == ("capture", 15, 25, 75)
        assert services.get_balance(user.pk, app).lifetime_spent == 25
        with pytest.raises(services.InvalidMovement):
            services.release_hold(hold.pk, actor=SYSTEM)

    def test_released_and_expired_holds_give_everything_back(self):
        user, app = new_user()
        services.grant_credits(user.pk, app, 100, reason="r", actor=SYSTEM)
        failed = services.hold_credits(user.pk, app, 30, action="chat", actor=SYSTEM)
        services.release_hold(failed.pk, actor=SYSTEM, reason="server failure")
        stale = services.hold_credits(user.pk, app, 30, action="chat", actor=SYSTEM, ttl_seconds=0)
        assert services.release_expired_holds() == 1
        stale.refresh_from_db()
        assert stale.status == "expired"
        balance = services.get_balance(user.pk, app)
        assert (balance.balance, balance.lifetime_spent) == (100, 0)

    def test_hold_beyond_balance_is_refused(self):
        user, app = new_user()
        with pytest.raises(services.InsufficientCredits):
            services.hold_credits(user.pk, app, 1, action="chat", actor=SYSTEM)

    def test_adjustments_need_a_reason_and_may_reference_what_they_correct(self):
        user, app = new_user()
        grant = services.grant_credits(user.pk, app, 100, reason="r", actor=SYSTEM)
        with pytest.raises(services.InvalidMovement):
            services.adjust_credits(user.pk, app, -10, reason=" ", actor=Actor.staff("ops"))
        fix = services.adjust_credits(
            user.pk, app, -10, reason="double grant", actor=Actor.staff("ops"), reverses=grant.pk
        )
        assert fix.reverses_id == grant.pk and fix.actor_type == "staff" and fix.balance_after == 90

    def test_entries_are_hash_chained(self):
        user, app = new_user()
        services.grant_credits(user.pk, app, 100, reason="r", actor=SYSTEM)
        services.deduct_credits(user.pk, app, 1, action="q", actor=SYSTEM)
        first, second = entries_of(user, app)
        assert first.prev_hash == GENESIS_HASH
        assert second.prev_hash == first.hash
        assert all(entry_hash(e) == e.hash for e in (first, second))

    def test_prices_default_from_settings_and_override_per_application(self, settings):
        settings.LEDGERCORE_PRICES = {"query": 3}
        _user, app = new_user()
        assert services.price_of(app, "query") == 3
        assert services.price_of(app, "unknown") == 0
        Price.objects.create(application_id=app, action="query", amount=7)
        assert services.price_of(app, "query") == 7


def account_of(user, app) -> CreditAccount:
    return CreditAccount.objects.get(user=user, application_id=app)


def assert_reconciles(user, app) -> None:
    report = reconcile_account(account_of(user, app))
    assert report.ok, report.problems


@pytest.mark.django_db
class TestExpiringGrants:
    def test_spending_uses_expiring_credits_first_and_the_rest_expires(self):
        user, app = new_user("expiring")
        soon = timezone.now() + timedelta(hours=1)
        grant = services.grant_credits(user.pk, app, 100, reason="trial", actor=SYSTEM, expires_at=soon)
        services.grant_credits(user.pk, app, 50, reason="purchase", actor=SYSTEM)
        services.deduct_credits(user.pk, app, 30, action="query", actor=SYSTEM)
        assert account_of(user, app).expiring == 70
        assert services.expire_credits(timezone.now()) == 0  # not yet
        assert services.expire_credits(soon + timedelta(seconds=1)) == 1
        expiry = entries_of(user, app)[-1]
        assert (expiry.kind, expiry.amount, expiry.balance_after, expiry.reverses_id) == (
            EntryKind.EXPIRY,
            -70,
            50,
            grant.pk,
        )
        assert ("credits_deducted", 70) in [(name, data.get("amount")) for name, data in events_for(expiry)]
        block = CreditBlock.objects.get(grant=grant)
        assert (block.remaining, block.expiry_id) == (0, expiry.pk) and block.expired_at is not None
        assert services.expire_credits(soon + timedelta(days=1)) == 0  # expired once
        assert services.get_balance(user.pk, app).balance == 50
        assert_reconciles(user, app)

    def test_soonest_expiring_block_is_drawn_first(self):
        user, app = new_user("expiring")
        now = timezone.now()
        late = services.grant_credits(user.pk, app, 10, reason="b", actor=SYSTEM, expires_at=now + timedelta(days=2))
        early = services.grant_credits(user.pk, app, 10, reason="a", actor=SYSTEM, expires_at=now + timedelta(days=1))
        services.deduct_credits(user.pk, app, 15, action="query", actor=SYSTEM)
        assert CreditBlock.objects.get(grant=early).remaining == 0
        assert CreditBlock.objects.get(grant=late).remaining == 5
        assert_reconciles(user, app)

    def test_unused_part_of_a_capture_returns_permanent_credits_first(self):
        user, app = new_user("expiring")
        grant = services.grant_credits(
            user.pk, app, 60, reason="trial", actor=SYSTEM, expires_at=timezone.now() + timedelta(hours=1)
        )
        services.grant_credits(user.pk, app, 40, reason="purchase", actor=SYSTEM)
        hold = services.hold_credits(user.pk, app, 80, action="analysis", actor=SYSTEM)  # 60 expiring + 20
        assert account_of(user, app).expiring == 0
        services.capture_hold(hold.pk, 30, actor=SYSTEM)  # 50 back: 20 permanent, then 30 expiring
        assert account_of(user, app).expiring == 30
        assert CreditBlock.objects.get(grant=grant).remaining == 30
        assert services.get_balance(user.pk, app).balance == 70
        assert_reconciles(user, app)

    def test_refund_returns_credits_to_their_block(self):
        user, app = new_user("expiring")
        services.grant_credits(
            user.pk, app, 20, reason="trial", actor=SYSTEM, expires_at=timezone.now() + timedelta(hours=1)
        )
        deduction = services.deduct_credits(user.pk, app, 15, action="query", actor=SYSTEM)
        services.refund_credits(deduction.pk, reason="server failed", actor=SYSTEM)
        assert account_of(user, app).expiring == 20
        assert_reconciles(user, app)

    def test_credits_given_back_to_an_expired_block_expire_at_once(self):
        user, app = new_user("expiring")
        soon = timezone.now() + timedelta(hours=1)
        services.grant_credits(user.pk, app, 100, reason="trial", actor=SYSTEM, expires_at=soon)
        hold = services.hold_credits(user.pk, app, 40, action="analysis", actor=SYSTEM)
        services.expire_credits(soon + timedelta(seconds=1))
        assert services.get_balance(user.pk, app).balance == 0
        release = services.release_hold(hold.pk, actor=SYSTEM)
        lapsed = entries_of(user, app)[-1]
        assert (release.kind, release.amount) == (EntryKind.RELEASE, 40)
        assert (lapsed.kind, lapsed.amount, lapsed.balance_after, lapsed.reverses_id) == (
            EntryKind.EXPIRY,
            -40,
            0,
            release.pk,
        )
        assert account_of(user, app).expiring == 0
        assert_reconciles(user, app)

    def test_expiry_date_must_be_in_the_future(self):
        user, app = new_user("expiring")
        with pytest.raises(services.InvalidMovement):
            services.grant_credits(
                user.pk, app, 5, reason="late", actor=SYSTEM, expires_at=timezone.now() - timedelta(seconds=1)
            )
        assert entries_of(user, app) == []

    def test_database_refuses_more_expiring_credits_than_the_balance(self):
        user, app = new_user("expiring")
        services.grant_credits(user.pk, app, 5, reason="r", actor=SYSTEM)
        with pytest.raises(IntegrityError), transaction.atomic():
            CreditAccount.objects.filter(user=user, application_id=app).update(expiring=6)

    def test_expire_credits_command(self):
        user, app = new_user("expiring")
        services.grant_credits(
            user.pk, app, 5, reason="r", actor=SYSTEM, expires_at=timezone.now() + timedelta(milliseconds=300)
        )
        time.sleep(0.4)
        out = io.StringIO()
        call_command("expire_credits", stdout=out)
        assert "1 expired grant(s) closed" in out.getvalue()
        assert services.get_balance(user.pk, app).balance == 0


@pytest.mark.django_db
class TestDatabaseGuarantees:
    def test_orm_and_raw_updates_of_ledger_rows_are_refused(self):
        user, app = new_user()
        entry = services.grant_credits(user.pk, app, 100, reason="r", actor=SYSTEM)
        with pytest.raises(DatabaseError), transaction.atomic():
            LedgerEntry.objects.filter(pk=entry.pk).update(amount=1_000_000)
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE credits_ledgerentry SET amount = 5 WHERE id = %s", [entry.pk])
        entry.refresh_from_db()
        assert entry.amount == 100

    def test_raw_delete_and_truncate_are_refused_on_postgresql(self):
        if connection.vendor != "postgresql":
            pytest.skip("DELETE/TRUNCATE triggers are PostgreSQL's")
        user, app = new_user()
        entry = services.grant_credits(user.pk, app, 100, reason="r", actor=SYSTEM)
        for statement in ("DELETE FROM credits_ledgerentry WHERE id = %s", "TRUNCATE credits_ledgerentry CASCADE"):
            with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL ledgercore.ledger_purge = 'off'")
                cursor.execute(statement, [entry.pk] if "%s" in statement else None)
        assert LedgerEntry.objects.filter(pk=entry.pk).exists()

    def test_negative_balance_is_refused_by_the_database(self):
        user, app = new_user()
        services.grant_credits(user.pk, app, 5, reason="r", actor=SYSTEM)
        from credits.models import CreditAccount

        with pytest.raises(IntegrityError), transaction.atomic():
            CreditAccount.objects.filter(user=user, application_id=app).update(balance=-1)

    def test_every_entry_saved_gets_one_outbox_row_through_the_models_signal(self):
        user, app = new_user()
        services.grant_credits(user.pk, app, 100, reason="r", actor=SYSTEM)
        services.deduct_credits(user.pk, app, 10, action="q", actor=SYSTEM)
        entries = entries_of(user, app)
        assert [OutboxEvent.objects.filter(entry=e).count() for e in entries] == [1] * len(entries)
        # An entry saved by any other code is announced the same way.
        last = entries[-1]
        copy = LedgerEntry.objects.create(
            **{
                f.attname: getattr(last, f.attname)
                for f in LedgerEntry._meta.concrete_fields
                if f.attname not in ("id", "sequence", "idempotency_key")
            },
            sequence=last.sequence + 1,
            idempotency_key=f"direct:{uuid.uuid4().hex}",
        )
        assert OutboxEvent.objects.filter(entry=copy).count() == 1

    def test_rollback_after_a_deduction_leaves_no_entry_and_no_event(self):
        user, app = new_user()
        services.grant_credits(user.pk, app, 100, reason="r", actor=SYSTEM)
        before = OutboxEvent.objects.count()
        with pytest.raises(RuntimeError), transaction.atomic():
            services.deduct_credits(user.pk, app, 10, action="q", actor=SYSTEM)
            raise RuntimeError("the request failed after charging")
        assert services.get_balance(user.pk, app).balance == 100
        assert OutboxEvent.objects.count() == before


@pytest.mark.django_db(transaction=True)
def test_concurrent_deductions_on_one_account_never_overdraw_on_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("row-lock concurrency is tested on PostgreSQL")
    user, app = new_user("hot")
    services.grant_credits(user.pk, app, 3000, reason="r", actor=SYSTEM)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(thread: int) -> None:
        from django.db import connections

        try:
            for n in range(100):
                key = f"t{thread % 40}-{n}" if n % 5 == 0 else f"t{thread}-{n}-{uuid.uuid4().hex[:6]}"
                try:
                    services.deduct_credits(user.pk, app, 1, action="query", actor=SYSTEM, idempotency_key=key)
                    result = "ok"
                except services.InsufficientCredits:
                    result = "refused"
                with lock:
                    outcomes.append(result)
        finally:
            connections.close_all()

    before = services.group_commit_stats()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = entries_of(user, app)
    deductions = [e for e in entries if e.kind == EntryKind.DEDUCTION]
    balance = services.get_balance(user.pk, app)
    assert len(outcomes) == 5000
    assert len(deductions) == 3000  # exactly the affordable number
    assert balance.balance == 0
    assert sum(e.amount for e in entries) == balance.balance
    assert [e.sequence for e in entries] == list(range(1, len(entries) + 1))
    keys = [e.idempotency_key for e in deductions]
    assert len(keys) == len(set(keys))  # replayed keys wrote nothing twice
    # Entries a batch inserted together were announced like saved ones: one
    # outbox row each, none for anything else.
    rows = OutboxEvent.objects.filter(entry__account__user=user).values_list("entry_id", flat=True)
    assert sorted(rows) == sorted(e.pk for e in entries)
    assert [e.pk for e in entries] == sorted(e.pk for e in entries)  # inserted in sequence order
    batches, movements = (now - then for now, then in zip(services.group_commit_stats(), before, strict=True))
    assert movements == 5000 and batches < movements  # waiting movements shared commits


@pytest.mark.django_db(transaction=True)
def test_movements_committed_together_keep_their_own_outcomes():
    """Movements queued on a busy account share one transaction; a refused
    one fails alone, and one the database refuses is retried alone."""
    user, app = new_user("batch")
    services.grant_credits(user.pk, app, 100, reason="r", actor=SYSTEM)
    outcomes: dict[str, object] = {}

    def attempt(name: str, call) -> None:
        from django.db import connections

        try:
            outcomes[name] = call()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcomes[name] = exc
        finally:
            connections.close_all()

    def deduct(amount: int, key: str):
        return lambda: services.deduct_credits(user.pk, app, amount, action="q", actor=SYSTEM, idempotency_key=key)

    calls = {
        "first": deduct(10, "k-first"),
        "ok": deduct(20, "k-ok"),
        "too-much": deduct(1000, "k-too-much"),
        "db-refused": lambda: services.adjust_credits(user.pk, app, -1, reason="fix", actor=SYSTEM, reverses=10**9),
        "same-key": deduct(20, "k-ok"),
        "last": deduct(30, "k-last"),
    }
    before = services.group_commit_stats()
    threads = {name: threading.Thread(target=attempt, args=(name, call)) for name, call in calls.items()}
    with transaction.atomic():
        # Holding the account's lock keeps "first" (the leader) waiting in
        # the database while the others queue behind it in this process.
        services.grant_credits(user.pk, app, 1, reason="hold the lock", actor=SYSTEM)
        deadline = time.monotonic() + 20
        for position, name in enumerate(calls, start=1):
            threads[name].start()
            while services.movements_in_flight(user.pk, app) < position:
                assert time.monotonic() < deadline, f"{name} did not queue"
                time.sleep(0.01)
    for thread in threads.values():
        thread.join(30)
    batches, movements = (now - then for now, then in zip(services.group_commit_stats(), before, strict=True))
    assert (batches, movements) == (2, 6)  # "first" alone, then the five queued behind it together
    assert isinstance(outcomes["too-much"], services.InsufficientCredits)
    assert isinstance(outcomes["db-refused"], LedgerEntry.DoesNotExist)
    assert outcomes["same-key"] == outcomes["ok"]  # replayed inside the batch: one entry
    entries = entries_of(user, app)
    assert [(e.kind, e.amount, e.balance_after) for e in entries] == [
        (EntryKind.GRANT, 100, 100),
        (EntryKind.GRANT, 1, 101),
        (EntryKind.DEDUCTION, -10, 91),
        (EntryKind.DEDUCTION, -20, 71),
        (EntryKind.DEDUCTION, -30, 41),
    ]
    assert [e.sequence for e in entries] == [1, 2, 3, 4, 5]
    assert services.get_balance(user.pk, app).balance == 41
    assert outcomes["last"].pk == entries[-1].pk  # each caller gets its own entry, with its id
    assert OutboxEvent.objects.filter(entry__in=entries).count() == 5


# --- over a real WebSocket -------------------------------------------------------

pytestmark_ws = pytest.mark.django_db(transaction=True)


@pytestmark_ws
async def test_grant_reaches_the_open_socket_with_balance_and_sequence(live_server_url):
    user_id = unique("live")
    client = await connected(live_server_url, user_id)
    assert client.balance["data"]["newBalance"] == 0 and client.balance["data"]["sequence"] == 0
    user = await database_sync_to_async(accounts.get_or_create_user)(user_id)
    app = client.hello["data"]["applicationId"]
    entry = await database_sync_to_async(services.grant_credits)(user.pk, app, 250, reason="welcome", actor=SYSTEM)
    granted = await client.expect("credits_granted")
    assert granted["data"] == {
        "amount": 250,
        "newBalance": 250,
        "reason": "welcome",
        "transactionId": str(entry.pk),
        "timestamp": granted["data"]["timestamp"],
        "applicationId": app,
        "sequence": 1,
    }
    assert "id" not in granted
    balance = await client.expect("credit_balance_updated")
    assert balance["data"] == {
        "newBalance": 250,
        "lifetimeEarned": 250,
        "lifetimeSpent": 0,
        "applicationId": app,
        "sequence": 1,
    }
    await database_sync_to_async(services.deduct_credits)(user.pk, app, 40, action="query", actor=SYSTEM)
    deducted = await client.expect("credits_deducted")
    assert (deducted["data"]["amount"], deducted["data"]["newBalance"], deducted["data"]["action"]) == (
        40,
        210,
        "query",
    )
    balance = await client.expect("credit_balance_updated")
    assert (balance["data"]["lifetimeSpent"], balance["data"]["sequence"]) == (40, 2)
    await client.close()


@pytestmark_ws
async def test_balance_after_connect_reflects_the_bound_application(live_server_url):
    user_id = unique("rich")
    await database_sync_to_async(funded)(user_id, 77, reason="r")
    client = await connected(live_server_url, user_id)
    assert client.balance["data"]["newBalance"] == 77 and client.balance["data"]["sequence"] == 1
    await client.close()


@pytest.fixture
def priced_ping(monkeypatch, settings):
    """ping made chargeable, to exercise the registry's charging path."""
    from realtime.registry import registry

    monkeypatch.setitem(registry.inbound_events, "ping", replace(registry.inbound_events["ping"], price="ping"))
    settings.LEDGERCORE_PRICES = {"ping": 5}
    return registry


@pytestmark_ws
async def test_chargeable_event_without_credits_gets_insufficient_credits_and_does_not_run(
    live_server_url, priced_ping
):
    client = await connected(live_server_url, unique("poor"))
    frame = await client.request("ping", id="p1")
    assert frame == {
        "event": "insufficient_credits",
        "data": {"required": 5, "available": 0, "action": "ping"},
        "id": "p1",
    }
    await client.nothing(0.3)  # no pong: not executed
    await client.close()


@pytestmark_ws
async def test_chargeable_event_is_charged_on_success(live_server_url, priced_ping):
    user_id = unique("payer")
    await database_sync_to_async(funded)(user_id, 12, reason="r")
    client = await connected(live_server_url, user_id)
    assert (await client.request("ping", id="a"))["event"] == "pong"
    deducted = await client.expect("credits_deducted")
    assert (deducted["data"]["amount"], deducted["data"]["action"]) == (5, "ping")
    assert (await client.request("ping", id="b"))["event"] == "pong"
    refused = await client.request("ping", id="c")
    assert refused["event"] == "insufficient_credits" and refused["data"]["available"] == 2
    await client.close()


@pytestmark_ws
async def test_server_failure_refunds_the_charge(live_server_url, priced_ping, monkeypatch):
    user_id = unique("unlucky")
    user, app = await database_sync_to_async(funded)(user_id, 10, reason="r")

    async def broken(ctx, data):
        raise ZeroDivisionError

    monkeypatch.setitem(priced_ping.inbound_events, "ping", replace(priced_ping.inbound_events["ping"], handler=broken))
    client = await connected(live_server_url, user_id)
    frame = await client.request("ping", id="x")
    assert frame["data"]["code"] == "INTERNAL"
    refunded = await client.expect("credit_balance_updated", sequence=3)  # grant, hold, release
    assert refunded["data"]["newBalance"] == 10
    balance = await database_sync_to_async(services.get_balance)(user.pk, app)
    assert balance.balance == 10 and balance.lifetime_spent == 0
    kinds = await database_sync_to_async(lambda: [e.kind for e in entries_of(user, app)])()
    assert kinds == ["grant", "hold", "release"]
    await client.close()


# --- commit-time delivery in batches ----------------------------------------------


async def personal_frames(client, user_id: str, count: int, timeout: float = 15.0) -> list[dict]:
    """The next ``count`` credit events of the user's room (room_resync and
    other frames skipped)."""
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        frame = await client.recv(timeout=max(deadline - time.monotonic(), 0.01))
        if frame.get("room") == f"user:{user_id}" and frame["event"] != "room_resync":
            found.append(frame)
    return found


def grant_many(user, app, count: int) -> list[LedgerEntry]:
    """``count`` grants committed together: their outbox rows reach the
    dispatcher at once."""
    with transaction.atomic():
        return [services.grant_credits(user.pk, app, 1, reason=f"r{n}", actor=SYSTEM) for n in range(count)]


@pytestmark_ws
async def test_many_entries_of_one_user_reach_the_socket_in_sequence_order_in_few_publishes(
    live_server_url, monkeypatch
):
    user_id = unique("burst")
    client = await connected(live_server_url, user_id)
    user = await database_sync_to_async(accounts.get_or_create_user)(user_id)
    app = client.hello["data"]["applicationId"]
    # The channel-layer messages to the user's room (the layer itself is real).
    layer = get_channel_layer()
    group, send = group_name(f"user:{user_id}"), layer.group_send
    messages: list[str] = []

    async def counted(name: str, message: dict) -> None:
        if name == group:
            messages.append(message["type"])
        await send(name, message)

    monkeypatch.setattr(layer, "group_send", counted)
    await database_sync_to_async(grant_many)(user, app, 40)
    frames = await personal_frames(client, user_id, 80)
    assert [(f["event"], f["data"]["sequence"]) for f in frames] == [
        (event, sequence) for sequence in range(1, 41) for event in ("credits_granted", "credit_balance_updated")
    ]
    assert [f["data"]["newBalance"] for f in frames[1::2]] == list(range(1, 41))
    assert [f["offset"] for f in frames] == list(range(frames[0]["offset"], frames[0]["offset"] + 80))
    assert len({f["epoch"] for f in frames}) == 1
    # Published together, not one message per event.
    assert 0 < len(messages) < 40 and "room.events" in messages
    assert await asyncio.to_thread(flush_dispatcher)
    undelivered = await database_sync_to_async(
        lambda: OutboxEvent.objects.filter(entry__account__user=user, delivered_at=None).count()
    )()
    assert undelivered == 0
    await client.nothing(0.3)
    await client.close()


@pytestmark_ws
async def test_entries_of_several_users_committed_together_reach_each_in_order(live_server_url):
    user_ids = [unique(f"many{n}") for n in range(3)]
    clients = [await connected(live_server_url, user_id) for user_id in user_ids]
    users = [await database_sync_to_async(accounts.get_or_create_user)(user_id) for user_id in user_ids]
    apps = [client.hello["data"]["applicationId"] for client in clients]

    def interleaved() -> None:
        with transaction.atomic():
            for n in range(5):
                for user, app in zip(users, apps, strict=True):
                    services.grant_credits(user.pk, app, n + 1, reason="r", actor=SYSTEM)

    await database_sync_to_async(interleaved)()
    for client, user_id in zip(clients, user_ids, strict=True):
        frames = await personal_frames(client, user_id, 10)
        assert [(f["event"], f["data"]["sequence"]) for f in frames] == [
            (event, sequence) for sequence in range(1, 6) for event in ("credits_granted", "credit_balance_updated")
        ]
        assert frames[-1]["data"]["newBalance"] == 15
        await client.nothing(0.2)
        await client.close()


@pytest.mark.redis_stack
@pytestmark_ws
async def test_a_failed_batched_publish_leaves_its_rows_to_the_relay(live_server_url, monkeypatch, settings):
    # The server's own relay leaves the rows to the one this test runs.
    settings.LEDGERCORE_OUTBOX_RETRY_SECONDS = 600
    user_id = unique("redisfail")
    client = await connected(live_server_url, user_id)
    user = await database_sync_to_async(accounts.get_or_create_user)(user_id)
    app = client.hello["data"]["applicationId"]
    # A real Redis error in the history script of the user's room: its key
    # holds a value of the wrong type.
    meta = lcredis.key("history", f"user:{user_id}", "meta")
    await lcredis.command("SET", meta, "not a hash")
    count = 300  # more events (600) than one publish carries
    entries = await database_sync_to_async(grant_many)(user, app, count)
    assert await asyncio.to_thread(flush_dispatcher)

    def rows() -> list[tuple[datetime | None, int]]:
        found = OutboxEvent.objects.filter(entry__in=entries).order_by("entry__sequence")
        return [(row.delivered_at, row.attempts) for row in found]

    assert await database_sync_to_async(rows)() == [(None, 1)] * count
    await client.nothing(0.3)

    # The relay sends them once Redis answers: in sequence order, in as few
    # publishes as their size allows.
    layer = get_channel_layer()
    group, send = group_name(f"user:{user_id}"), layer.group_send
    messages: list[int] = []

    async def counted(name: str, message: dict) -> None:
        if name == group:
            messages.append(len(message["texts"]))
        await send(name, message)

    monkeypatch.setattr(layer, "group_send", counted)
    await lcredis.command("DEL", meta)
    assert await relay_once(older_than_seconds=0) == count
    assert all(delivered is not None for delivered, _ in await database_sync_to_async(rows)())
    assert messages == [PUBLISH_EVENTS, 2 * count - PUBLISH_EVENTS]
    frames = await personal_frames(client, user_id, 2 * count)
    assert [(f["event"], f["data"]["sequence"]) for f in frames] == [
        (event, sequence) for sequence in range(1, count + 1) for event in ("credits_granted", "credit_balance_updated")
    ]
    assert [f["offset"] for f in frames] == list(range(1, 2 * count + 1))
    await client.close()

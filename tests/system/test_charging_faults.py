"""Every charge settles exactly once, whatever fails: refused requests are
never charged; a PostgreSQL outage ends a request with UNAVAILABLE and the
server serves again when PostgreSQL is back; the holds of dead processes
are released, and reconcile_ledger tells a hold settled wrongly. (A server
killed with SIGKILL: tests/system/test_charging_kill.py.)

The fault tests start real processes: daphne, and for the outage a
PostgreSQL cluster of their own (devtools.pgcluster) that they stop and
start; the shared servers are never touched.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from credits import services as credits
from credits.models import Hold
from credits.reconcile import reconcile_accounts
from devtools.chargefaults import final_of, grant, hello, pending_holds, recv, server_rows, settlement_problems
from devtools.pgcluster import PostgresCluster
from devtools.servers import DaphneProcess, manage, migrated_environment
from queryengine.models import QueryLimits
from realtime import processes
from realtime.models import ServerProcess
from tests.factories import funded
from tests.queryengine.test_query_ws import DONE, SLOW_SQL, fund
from tests.wsclient import DEV_SECRET, connected, dev_token, frames_until, unique

# Short liveness settings, so that a dead process's holds go within seconds.
FAULT_ENV = {
    "LEDGERCORE_PRICES": "query=1",
    "LEDGERCORE_THROTTLE_RATES": "connection=1000/s,user=1000/s,expensive=1000/s",
    "LEDGERCORE_PROCESS_HEARTBEAT_SECONDS": "0.5",
    "LEDGERCORE_PROCESS_DEAD_SECONDS": "3",
    "LOG_LEVEL": "INFO",
}
FAST_SQL = "SELECT count(*) FROM credit_entries"
# A 4-way self join of the user's first 12 ledger entries: the same work
# however many entries the run adds.
MEDIUM_SQL = (
    "SELECT count(*) FROM credit_entries a, credit_entries b, credit_entries c, credit_entries d "
    "WHERE a.sequence <= 12 AND b.sequence <= 12 AND c.sequence <= 12 AND d.sequence <= 12"
)


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_query_refused_by_the_concurrency_limit_or_a_throttle_is_not_charged(live_server_url, settings):
    settings.LEDGERCORE_PRICES = {"query": 3}
    settings.LEDGERCORE_THROTTLE_RATES = {**settings.LEDGERCORE_THROTTLE_RATES, "expensive": "2/h"}
    me = unique("limited")
    user_pk, app = await fund(me, grants=30, amount=1)
    await database_sync_to_async(QueryLimits.objects.create)(application_id=app, max_concurrent=1)
    async with await connected(live_server_url, me) as client:
        before = client.balance["data"]["newBalance"]
        await client.send("query", {"sql": SLOW_SQL}, id="slow")
        slow_id = (await client.expect("query_started"))["data"]["queryId"]
        await client.send("query", {"sql": FAST_SQL}, id="refused")
        refused = await frames_until(client, "refused", DONE)
        assert (refused[-1]["event"], refused[-1]["data"]["code"]) == ("query_error", "RATE_LIMITED")
        await client.send("query_cancel", {"queryId": slow_id})
        cancelled = await frames_until(client, "slow", DONE)
        assert cancelled[-1]["data"]["code"] == "CANCELLED"  # it ran, then was stopped: charged
        throttled = await client.request("query", {"sql": FAST_SQL})
        assert (throttled["event"], throttled["data"]["code"]) == ("rate_limit_error", "RATE_LIMITED")

    @database_sync_to_async
    def ledger() -> tuple[int, list[str]]:
        holds = Hold.objects.filter(account__user_id=user_pk, account__application_id=app).order_by("pk")
        return credits.get_balance(user_pk, app).balance, [hold.status for hold in holds]

    for _ in range(100):  # the settlements run after the answers
        balance, holds = await ledger()
        if "pending" not in holds:
            break
        await asyncio.sleep(0.05)
    # One query ran (cancelled: charged); the one refused by the concurrency
    # limit was held and released; the throttled one never held anything.
    assert holds == ["captured", "released"]
    assert balance == before - 3


# --- helpers for server subprocesses --------------------------------------------------------------


# --- PostgreSQL outage ---------------------------------------------------------------------------


@pytest.mark.redis_stack
def test_postgresql_outage_ends_the_request_unavailable_and_the_server_serves_again(tmp_path):
    from django.conf import settings

    with (
        PostgresCluster() as pg,
        migrated_environment(
            tmp_path,
            dev_secret=DEV_SECRET,
            postgres_url=pg.url(),
            redis_url=settings.REDIS_URL,
            redis_prefix=settings.LEDGERCORE_REDIS_PREFIX,
            LEDGERCORE_QUERY_MAX_CONCURRENT="1",  # a stale record would refuse the next query
            **{**FAULT_ENV, "LEDGERCORE_PRICES": "query=1,chat=1"},
        ) as env,
    ):
        grant(env, ["outage_user"], grants=30, amount=2)
        server = DaphneProcess(env, tmp_path / "daphne.log").start()
        url = f"{server.url}/ws?token={dev_token('outage_user')}"
        try:
            with connect(url) as ws:
                hello(ws)
                ws.send(json.dumps({"event": "query", "data": {"sql": SLOW_SQL}, "id": "slow"}))
                while recv(ws, 10)["event"] != "query_started":
                    pass
                time.sleep(0.3)  # running in PostgreSQL
                stopped = time.monotonic()
                pg.stop("fast")
                final = final_of(ws, "slow", timeout=10)
                took = time.monotonic() - stopped
                assert (final["event"], final["data"]["code"]) == ("query_error", "UNAVAILABLE"), final
                assert final["data"]["retryAfter"] >= 1
                assert took < 5, f"the final event came {took:.1f} s after PostgreSQL stopped"

                ws.send(json.dumps({"event": "query", "data": {"sql": FAST_SQL}, "id": "down"}))
                refused = final_of(ws, "down", timeout=5)
                assert (refused["event"], refused["data"]["code"]) == ("query_error", "UNAVAILABLE"), refused
                ws.send(json.dumps({"event": "chat", "data": {"message": "how many credit entries?"}, "id": "ask"}))
                refused = final_of(ws, "ask", timeout=5)
                assert (refused["event"], refused["data"]["code"]) == ("chat_error", "UNAVAILABLE"), refused
                room = {"room": "application:whatever"}
                ws.send(json.dumps({"event": "subscribe", "data": room, "id": "join"}))
                refused = final_of(ws, "join", timeout=5)
                assert (refused["event"], refused["data"]["code"]) == ("error", "UNAVAILABLE"), refused

            back = time.monotonic()
            pg.start()
            served = None
            while served is None and time.monotonic() - back < 15:
                try:
                    with connect(url, open_timeout=2) as ws:
                        hello(ws)
                        ws.send(json.dumps({"event": "query", "data": {"sql": FAST_SQL}, "id": "back"}))
                        reply = final_of(ws, "back", timeout=5)
                        if reply["event"] == "query_completed":
                            served = time.monotonic() - back
                except (WebSocketException, OSError, TimeoutError, AssertionError):
                    pass
                if served is None:
                    time.sleep(0.2)
            assert served is not None and served < 5, f"served again after {served} s"
            print(f"UNAVAILABLE {took:.2f} s after the stop; served again {served:.2f} s after the restart")

            deadline = time.monotonic() + 10
            while pending_holds(env) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert pending_holds(env) == 0
            assert settlement_problems(env) == []
            statuses = server_rows(env, "SELECT status, error_code FROM queryengine_queryrecord ORDER BY created_at")
            assert statuses[0] == ("failed", "UNAVAILABLE")  # not left running
            assert ("completed", "") in statuses
            assert "0 failing" in manage(env, "reconcile_ledger")
        finally:
            server.stop()
            if not pg.running():
                pg.start()
        assert "Traceback" not in server.logs()


# --- the ledger's side ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_holds_of_dead_processes_are_released_and_only_theirs():
    user, app = funded(unique("owned"), 30, reason="test")
    now = timezone.now()
    ServerProcess.objects.create(id="alive:1", started_at=now, heartbeat_at=now)
    ServerProcess.objects.create(id="dead:2", started_at=now, heartbeat_at=now - timedelta(minutes=5))
    for owner in ("alive:1", "dead:2", "never-heartbeat:3", ""):
        credits.hold_credits(user.pk, app, 5, action="query", actor=credits.Actor.system(), owner=owner)
    Hold.objects.update(created_at=now - timedelta(minutes=1))
    young = credits.hold_credits(user.pk, app, 5, action="query", actor=credits.Actor.system(), owner="starting:4")

    assert processes.reap_dead() == 2
    statuses = {hold.owner: hold.status for hold in Hold.objects.all()}
    assert statuses == {
        "alive:1": "pending",
        "dead:2": "released",
        "never-heartbeat:3": "released",
        "": "pending",  # a job's, or a caller's that settles it itself: expires at its TTL
        "starting:4": "pending",  # too young to tell: its process may not have beaten yet
    }
    assert young.owner == "starting:4"
    assert credits.get_balance(user.pk, app).balance == 30 - 3 * 5
    assert processes.reap_dead() == 0

    # A process of this machine whose PID is gone is dead at once, however
    # fresh its heartbeat and young its hold.
    exited = subprocess.Popen(["true"])
    exited.wait()
    ServerProcess.objects.create(
        id="crashed:5",
        hostname=processes.HOSTNAME,
        pid_namespace=processes.PID_NAMESPACE,
        pid=exited.pid,
        started_at=now,
        heartbeat_at=timezone.now(),
    )
    credits.hold_credits(user.pk, app, 5, action="query", actor=credits.Actor.system(), owner="crashed:5")
    assert processes.reap_dead(by_heartbeat=False) == (1 if processes.PID_NAMESPACE else 0)


@pytest.mark.django_db
def test_reconcile_reports_a_hold_whose_status_does_not_match_its_entries():
    user, app = funded(unique("audited"), 10, reason="test")
    hold = credits.hold_credits(user.pk, app, 4, action="query", actor=credits.Actor.system())
    credits.capture_hold(hold.pk, 4, actor=credits.Actor.system())
    assert [report.problems for report in reconcile_accounts()] == [[]]
    Hold.objects.filter(pk=hold.pk).update(status=Hold.Status.PENDING)  # captured, yet open again
    (report,) = reconcile_accounts()
    assert not report.ok
    assert report.problems == [f"hold {hold.pk} is pending with 1 hold, 1 capture, 0 release"]

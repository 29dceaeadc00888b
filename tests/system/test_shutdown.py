"""Graceful shutdown of real server processes (``ledgercore.serve``, as
``make run`` starts it): SIGTERM with clients connected and queries in flight.

One process on the run's stack; on the scaled stack a second process shares
Redis, watches the first one's members leave, and takes over a client that
reconnects.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.servers import DaphneProcess, manage
from tests.stacks import migrated_stack_env, scaled_stack
from tests.wsclient import Client, dev_token

DRAIN_SECONDS = 5.0
PRICE = 5
APP = "app_team"
GRANTS = 30  # each user's private credit_entries: 30 grant rows (then the query's hold)


def cross_join(ways: int) -> str:
    """A count over a cross join of the caller's own ledger rows: 30**ways
    rows, slow by construction and on both databases."""
    return "SELECT count(*) FROM " + ", ".join(f"credit_entries t{i}" for i in range(ways))


# About a second on either stack here (a few times shorter than the drain
# window), and one that outlasts any drain window (minutes).
FINISHING_SQL = {False: cross_join(5) + " WHERE t0.sequence <= 3", True: cross_join(5) + " WHERE t0.sequence <= 1"}
ENDLESS_SQL = cross_join(6)

SETUP = f"""
from accounts import services as accounts
from accounts.models import Application
from credits import services as credits

team, _ = Application.objects.get_or_create(id={APP!r}, defaults={{"name": "Team"}})
for name in ("alice", "bob", "carol", "dave", "erin"):
    user = accounts.get_or_create_user(name)
    accounts.add_member(team, user)
    for index in range({GRANTS}):
        credits.grant_credits(user.pk, team.id, 10, reason=f"grant {{index}}", actor=credits.Actor.system())
"""

LEDGER = f"""
import json
from credits.models import CreditAccount, Hold
from credits.reconcile import reconcile_accounts

out = {{"failing": [r.as_dict() for r in reconcile_accounts() if not r.ok]}}
for account in CreditAccount.objects.filter(application_id={APP!r}).select_related("user"):
    holds = list(Hold.objects.filter(account=account).values("status", "amount", "captured"))
    out[account.user.username] = {{"balance": account.balance, "holds": holds}}
print(json.dumps(out))
"""


def environment(tmp_path: Any, scaled: bool) -> Any:
    extra = {
        "LEDGERCORE_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "LEDGERCORE_PRICES": f"query={PRICE}",
        "LEDGERCORE_QUERY_TIME_LIMIT_MS": "60000",
        # Longer than the test: a membership that leaves did so because its
        # process released it, never because a sweeper presumed it dead.
        "LEDGERCORE_PRESENCE_TIMEOUT_SECONDS": "60",
        "LOG_LEVEL": "INFO",
    }
    return migrated_stack_env(tmp_path, scaled, **extra)


async def joined(url: str, user: str) -> Client:
    client = await Client.connect(url, dev_token(user, APP))
    await client.expect("connected")
    await client.send("subscribe", {"room": f"application:{APP}"}, id="sub")
    await client.expect("subscribed")
    return client


async def until_closed(client: Client, timeout: float) -> tuple[list[dict[str, Any]], int | None, str]:
    """Every frame until the server closes the socket, then its close code and reason."""
    frames = list(client.backlog)
    client.backlog.clear()
    try:
        async with asyncio.timeout(timeout):
            async for raw in client.ws:
                frames.append(json.loads(raw))
    except TimeoutError:
        raise AssertionError(f"not closed within {timeout} s; got {[f['event'] for f in frames]}") from None
    except Exception:  # noqa: BLE001 - a close without a close frame: reported through close_code
        pass
    return frames, client.ws.close_code, client.ws.close_reason or ""


def request_frames(frames: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("id") == request_id and f["event"] != "query_progress"]


def redis_members(prefix: str) -> tuple[list[str], list[str]]:
    """Process ids with a heartbeat, and process membership records."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        procs = [str(p) for p in client.zrange(f"{prefix}:procs", 0, -1)]
        records = sorted(str(k) for k in client.scan_iter(f"{prefix}:proc:*"))
        return procs, records
    finally:
        client.close()


async def scenario(a: DaphneProcess, b: DaphneProcess | None, scaled: bool) -> dict[str, Any]:
    dave = await joined(b.url, "dave") if b else None  # on the other process
    alice = await joined(a.url, "alice")  # a query that outlasts the drain window
    bob = await joined(a.url, "bob")  # a query that finishes within it
    carol = await joined(a.url, "carol")  # nothing in flight
    if dave:
        for name in ("alice", "bob", "carol"):
            await dave.expect("user_joined_room", userId=name)

    await alice.send("query", {"sql": ENDLESS_SQL}, id="slow")
    await alice.expect("query_started")
    await bob.send("query", {"sql": FINISHING_SQL[scaled]}, id="fin")
    await bob.expect("query_started")

    assert a.process is not None
    signalled = time.monotonic()
    a.process.send_signal(signal.SIGTERM)

    # Closed at once: nothing in flight.
    carol_frames, carol_code, carol_reason = await until_closed(carol, DRAIN_SECONDS)
    # Alice's socket is still open (her query runs): a new request is
    # refused and not charged; ping still works.
    await alice.send("query", {"sql": "SELECT 1 AS one"}, id="late")
    refused = await alice.expect("query_error", timeout=DRAIN_SECONDS)
    await alice.send("ping", id="p")
    await alice.expect("pong", timeout=DRAIN_SECONDS)

    (bob_frames, bob_code, bob_reason), (alice_frames, alice_code, alice_reason) = await asyncio.gather(
        until_closed(bob, DRAIN_SECONDS + 2), until_closed(alice, DRAIN_SECONDS + 2)
    )
    exit_code = await asyncio.to_thread(a.process.wait, DRAIN_SECONDS + 2 - (time.monotonic() - signalled))
    exited_after = time.monotonic() - signalled

    result: dict[str, Any] = {
        "carol": (carol_frames, carol_code, carol_reason),
        "bob": (bob_frames, bob_code, bob_reason),
        "alice": (alice_frames, alice_code, alice_reason),
        "refused": refused,
        "exit_code": exit_code,
        "exited_after": exited_after,
    }
    if dave and b:
        # Each member's last connection left: announced once each.
        left = []
        for _ in range(3):
            left.append((await dave.expect("user_left_room", timeout=5))["data"]["userId"])
        await asyncio.sleep(1.0)
        left += [f["data"]["userId"] for f in dave.backlog if f["event"] == "user_left_room"]
        result["left"] = left
        await dave.send("subscribe", {"room": f"application:{APP}"}, id="count")
        result["count_after"] = (await dave.expect("subscribed"))["data"]["subscriberCount"]
        # Carol reconnects to the process still serving.
        again = await joined(b.url, "carol")
        result["rejoined"] = (await dave.expect("user_joined_room", userId="carol"))["data"]["userId"]
        await again.send("ping", id="p2")
        result["pong"] = (await again.expect("pong"))["id"]
        await again.ws.close()
        await dave.ws.close()
    return result


@pytest.fixture(scope="module")
def team_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated database with the members of APP and their credits."""
    with environment(tmp_path_factory.mktemp("shutdown"), scaled_stack()) as env:
        manage(env, "shell", "-c", SETUP)
        yield env


def test_sigterm_drains_requests_closes_1001_releases_presence_and_exits_cleanly(team_env, tmp_path):
    scaled, env = scaled_stack(), team_env
    a = DaphneProcess(env, tmp_path / "a.log").start()
    b = DaphneProcess(env, tmp_path / "b.log").start() if scaled else None
    try:
        result = asyncio.run(scenario(a, b, scaled))
        if b:
            procs, records = redis_members(env["LEDGERCORE_REDIS_PREFIX"])
            with urllib.request.urlopen(f"{b.http}/readyz", timeout=5) as response:
                assert response.status == 200
    finally:
        a.kill()
        b_exit = b.stop() if b else 0
    ledger = json.loads(manage(env, "shell", "-c", LEDGER).strip().splitlines()[-1])
    log = a.logs()

    for name in ("carol", "bob", "alice"):
        _, code, reason = result[name]
        assert code == 1001 and reason, (name, code, reason)

    # A request refused while draining: UNAVAILABLE with retryAfter.
    assert result["refused"]["id"] == "late"
    assert result["refused"]["data"]["code"] == "UNAVAILABLE"
    assert result["refused"]["data"]["retryAfter"] >= 1

    # Bob's query finished within the window, then his socket closed;
    # the credit event of its capture went out before the close.
    bob_frames = result["bob"][0]
    assert request_frames(bob_frames, "fin")[-1]["event"] == "query_completed", request_frames(bob_frames, "fin")
    assert bob_frames[-1]["event"] == "credit_balance_updated", [f["event"] for f in bob_frames]
    assert bob_frames[-1]["data"]["newBalance"] == GRANTS * 10 - PRICE

    # Alice's query was stopped at the deadline: its final error, then the
    # close. The release's balance event follows the error when it is
    # dispatched within the after-deadline budget (AFTER_DEADLINE_SECONDS;
    # on a loaded machine it may not be, and the client gets its balance
    # after its next `connected`); the release itself is checked in the
    # ledger below.
    alice_frames = result["alice"][0]
    final = request_frames(alice_frames, "slow")[-1]
    assert final["event"] == "query_error" and final["data"]["code"] == "UNAVAILABLE", final
    # Only credit events may follow it (the release's, and the outbox
    # relay's at-least-once re-sends of earlier ones); nothing of the query.
    after_error = alice_frames[alice_frames.index(final) + 1 :]
    assert all(f["event"].startswith("credit") for f in after_error), [f["event"] for f in after_error]
    assert not request_frames(after_error, "slow"), after_error

    # The ledger: bob's hold captured, alice's released, the refused request
    # never held; every account reconciles.
    assert ledger["failing"] == []
    assert ledger["bob"] == {
        "balance": GRANTS * 10 - PRICE,
        "holds": [{"status": "captured", "amount": 5, "captured": 5}],
    }
    assert ledger["alice"] == {"balance": GRANTS * 10, "holds": [{"status": "released", "amount": 5, "captured": None}]}

    # The process: exit code 0 within drain + 2 s (the wait above is bounded
    # by it), nothing logged as a traceback.
    assert result["exit_code"] == 0
    assert "Traceback" not in log, log
    assert "drained 3 connections" in log and "0 not disconnected" in log, log

    if scaled:
        assert sorted(result["left"]) == ["alice", "bob", "carol"], result["left"]
        assert result["count_after"] == 1
        # Only the process still serving heartbeats and holds memberships.
        assert len(procs) == 1, procs
        assert set(records) <= {f"{env['LEDGERCORE_REDIS_PREFIX']}:proc:{procs[0]}"}, (procs, records)
        assert result["rejoined"] == "carol" and result["pong"] == "p2"
        # The other process, stopped in turn with its sockets closed.
        assert b is not None and b_exit == 0 and "Traceback" not in b.logs()


@pytest.mark.skipif("scaled_stack()", reason="signal handling does not depend on the stack: run on the embedded one")
def test_a_second_signal_ends_the_drain_window_at_once(team_env, tmp_path):
    """SIGINT twice (Ctrl-C twice): the running query is stopped and
    refunded at once instead of at the deadline (60 s here)."""
    server = DaphneProcess({**team_env, "LEDGERCORE_DRAIN_SECONDS": "60"}, tmp_path / "d.log").start()
    assert server.process is not None
    process = server.process

    async def run() -> tuple[list[dict[str, Any]], int | None]:
        erin = await joined(server.url, "erin")
        await erin.send("query", {"sql": ENDLESS_SQL}, id="slow")
        await erin.expect("query_started")
        process.send_signal(signal.SIGINT)
        await erin.send("ping", id="p")
        await erin.expect("pong")  # draining: the socket stays open for its query
        process.send_signal(signal.SIGINT)
        frames, code, _ = await until_closed(erin, 10)
        return frames, code

    try:
        frames, code = asyncio.run(run())
        exit_code = process.wait(timeout=10)
    finally:
        server.kill()
    assert code == 1001
    assert request_frames(frames, "slow")[-1]["data"]["code"] == "UNAVAILABLE"
    # The hold was released: the balance is whole again, and the release's
    # balance event reached the socket before the close (the close follows
    # the room events the process received before it).
    ledger = json.loads(manage(team_env, "shell", "-c", LEDGER).strip().splitlines()[-1])
    assert ledger["failing"] == [] and ledger["erin"]["balance"] == GRANTS * 10
    assert [h["status"] for h in ledger["erin"]["holds"]] == ["released"]
    balances = [f["data"]["newBalance"] for f in frames if f["event"] == "credit_balance_updated"]
    assert GRANTS * 10 in balances, frames
    assert exit_code == 0
    assert "Traceback" not in server.logs()

"""Compliance events: the address_analysis job (lifecycle over a real
WebSocket, validation, charging and refund, crash and resume, the OFAC lists,
delisting, bounds), address_transactions pages and cross_border_flows.

On the scaled stack jobs run as Django tasks: a ``manage.py db_worker``
subprocess is started against the test database."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.utils import timezone

from accounts import services as accounts
from compliance import history, jobs
from compliance.addresses import encode_bitcoin_address
from compliance.flows import cross_border_flows as corridor_flows
from compliance.flows import parse_corridor
from compliance.ingest import GraphWriter, TransferRow, TxRow
from compliance.models import AddressLabel, AnalysisJob, JobStatus, TransferKind, TxStatus
from compliance.ofac import default_ofac_directory, import_ofac_lists
from compliance.services import ensure_chain, get_or_create_address, get_or_create_entity, label_address
from compliance.walk import Limits
from credits import services as credits
from credits.models import Hold
from devtools.servers import DbWorkerProcess, database_url
from marketdata import services as market
from marketdata.trades import TradeInput
from tests import wsclient
from tests.factories import funded
from tests.wsclient import Client, connected, unique

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = credits.Actor.system()
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
DONE = {"address_analysis_completed", "address_analysis_error"}
ETH = 10**18


def eth(tag: str) -> str:
    return "0x" + hashlib.sha256(tag.encode()).hexdigest()[:40]


def txh(tag: str) -> str:
    return "0x" + hashlib.sha256(f"tx:{tag}".encode()).hexdigest()


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def job_worker(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory):
    """The scaled stack's runner: a db_worker subprocess on the test database."""
    if django_settings.LEDGERCORE_JOBS != "tasks":
        yield None
        return
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=django_settings.REDIS_URL,
        LEDGERCORE_REDIS_PREFIX=django_settings.LEDGERCORE_REDIS_PREFIX,
        LEDGERCORE_VAR_DIR=str(tmp_path_factory.mktemp("worker")),
    )
    worker = DbWorkerProcess(env, tmp_path_factory.mktemp("logs") / "db_worker.log").start()
    yield worker
    worker.stop()


@pytest.fixture
def fast_reaper(settings: Any) -> None:
    settings.LEDGERCORE_ANALYSIS_STALE_SECONDS = 1.0


def build_graph(tag: str = "g") -> dict[str, str]:
    """target <- mixer (1 ETH); target <- u (3 ETH) <- darknet 0.5 / exchange 1.5; target -> v (0.8) -> scam 0.2.
    Amounts in wei beyond 64 bits: SQLite must still add them exactly."""
    chain = ensure_chain("ethereum")
    names = {n: eth(f"{tag}-{n}") for n in ("target", "mixer", "u", "darknet", "exchange", "v", "scam", "w")}
    edges = [
        ("mixer", "target", ETH),
        ("u", "target", 3 * ETH),
        ("darknet", "u", ETH // 2),
        ("exchange", "u", 3 * ETH // 2),
        ("target", "v", 8 * ETH // 10),
        ("v", "scam", 2 * ETH // 10),
        ("v", "w", 6 * ETH // 10),
    ]
    with GraphWriter(chain) as writer:
        for n, (a, b, value) in enumerate(edges, start=1):
            hash_, ts = txh(f"{tag}-{n}"), 1_700_000_000_000 + n * 60_000
            writer.add_transaction(TxRow(hash_, 100 + n, ts, 21_000 * 10**9, TxStatus.SUCCESS))
            writer.add_transfer(TransferRow(hash_, -1, TransferKind.NATIVE, names[a], names[b], value, ts))
    for key, category in (
        ("mixer", "mixer"),
        ("darknet", "darknet_market"),
        ("exchange", "exchange"),
        ("scam", "scam"),
    ):
        entity = get_or_create_entity(f"{tag} {key}", category)
        label_address(get_or_create_address(chain, names[key]), entity, source="test", confidence=90)
    return names


@database_sync_to_async
def fund(user_id: str, amount: int = 100) -> tuple[int, str]:
    user, app = funded(user_id, amount, reason="test grant")
    return user.pk, app


async def frames_until(client: Client, request_id: str, last: set[str], timeout: float = 30.0) -> list[dict[str, Any]]:
    """wsclient.frames_until, ending at a validation_error too."""
    return await wsclient.frames_until(client, request_id, last | {"validation_error"}, timeout)


def ofac_dir() -> Path:
    directory = default_ofac_directory()
    assert directory is not None and directory.is_dir(), "the OFAC fixture (data/ofac) is required"
    return directory


# --- the analysis service ---------------------------------------------------------------------


def test_exposure_on_a_hand_built_graph_is_exact_in_the_database():
    names = build_graph()
    result = jobs.analyse_address("ethereum", names["target"], 2)
    rows = {(r["direction"], r["category"]): r for r in result["exposure"]}
    assert rows[("in", "mixer")]["direct"] == "1"
    assert rows[("in", "darknet_market")]["indirect"] == "0.75"  # 3 ETH * 0.5/2
    assert rows[("in", "exchange")]["indirect"] == "2.25"
    assert rows[("out", "scam")]["indirect"] == "0.2"
    darknet = next(s for s in result["signals"] if s["category"] == "darknet_market")
    assert darknet["path"] == [txh("g-2"), txh("g-3")]
    assert darknet["counterparty"] == names["darknet"]
    assert darknet["sources"] == [{"source": "test", "version": "", "confidence": 90}]
    assert sum(s["contribution"] for s in result["signals"]) == result["riskScore"]
    assert jobs.analyse_address("ethereum", names["target"], 2) == result


def test_an_address_never_seen_is_low_and_says_so():
    ensure_chain("ethereum")
    result = jobs.analyse_address("ethereum", eth("nobody"), 2)
    assert result["known"] is False and result["riskLevel"] == "low" and result["signals"] == []


def test_truncation_on_a_huge_neighbourhood():
    chain = ensure_chain("ethereum")
    hub = eth("hub")
    with GraphWriter(chain) as writer:
        for n in range(400):
            hash_ = txh(f"hub-{n}")
            writer.add_transaction(TxRow(hash_, n, 1_700_000_000_000 + n, 0, TxStatus.SUCCESS))
            writer.add_transfer(
                TransferRow(hash_, -1, TransferKind.NATIVE, eth(f"fan-{n}"), hub, 1, 1_700_000_000_000 + n)
            )
    result = jobs.analyse_address("ethereum", hub, 3, bounds=Limits(max_edges_per_hop=100, max_edges=150))
    assert result["truncated"] is True
    assert result["stats"]["edgesRead"] <= 150


def test_every_ofac_address_of_a_supported_chain_scores_severe_and_delisting_stops_it(tmp_path):
    import_ofac_lists(ofac_dir())
    listed = list(
        AddressLabel.objects.filter(
            source__startswith="ofac:", delisted_at=None, address__chain__code__in=("ethereum", "bitcoin")
        )
        .values_list("address__chain__code", "address__address")
        .distinct()
    )
    assert len(listed) > 500
    for chain, address in listed:
        result = jobs.analyse_address(chain, address, 1)
        assert result["riskLevel"] == "severe", (chain, address, result["signals"])
        assert "SANCTIONS_OWNERSHIP" in result["rules"]

    # A later version of the lists without one ETH address delists it.
    later = tmp_path / "ofac-later"
    shutil.copytree(ofac_dir(), later)
    (later / "PROVENANCE.md").unlink()
    eth_list = later / "sanctioned_addresses_ETH.txt"
    lines = [line for line in eth_list.read_text().splitlines() if line.strip()]
    gone = lines[0].strip().lower()
    eth_list.write_text("\n".join(lines[1:]) + "\n")
    (later / "sanctioned_addresses_ETH.json").unlink(missing_ok=True)
    still_listed = AddressLabel.objects.filter(
        source__startswith="ofac:", delisted_at=None, address__address=gone
    ).exclude(source="ofac:ETH")
    if still_listed.exists():  # the same address on another asset's list stays sanctioned
        pytest.skip("the first ETH address is also on another list")
    import_ofac_lists(later, version="later-test")
    result = jobs.analyse_address("ethereum", gone, 1)
    assert result["riskLevel"] != "severe" and "SANCTIONS_OWNERSHIP" not in result["rules"]


# --- the job over a real WebSocket -------------------------------------------------------------


async def test_analysis_job_lifecycle_over_the_socket(live_server_url, job_worker):
    names = await database_sync_to_async(build_graph)("ws")
    me = unique("analyst")
    async with await connected(live_server_url, me) as client:
        await client.send("address_analysis", {"chain": "ethereum", "address": names["target"], "hops": 3}, id="a1")
        frames = await frames_until(client, "a1", DONE)
        events = [f["event"] for f in frames]
        assert events[0] == "address_analysis_started"
        assert events[-2:] == ["address_analysis_response", "address_analysis_completed"], events
        assert set(events[1:-2]) == {"address_analysis_progress"}
        job_id = frames[0]["data"]["jobId"]
        assert job_id.startswith("job_")
        assert all(f["data"]["jobId"] == job_id for f in frames)
        pcts = [f["data"]["pct"] for f in frames if f["event"] == "address_analysis_progress"]
        assert pcts == sorted(pcts) and pcts
        stages = [f["data"]["stage"] for f in frames if f["event"] == "address_analysis_progress"]
        assert "explain" in stages
        response = frames[-2]["data"]
        assert response["riskLevel"] == "severe" and response["address"] == names["target"]
        assert frames[-1]["data"]["durationMs"] >= 0
        # Also pushed, without the request id, to the personal room.
        pushed = await client.expect("address_analysis_response", timeout=10, jobId=job_id)
        assert "id" not in pushed and pushed["data"] == response
    job = await database_sync_to_async(AnalysisJob.objects.get)(pk=job_id)
    assert job.status == JobStatus.COMPLETED and job.pct == 100 and job.attempts == 1
    assert job.result["riskScore"] == response["riskScore"]


async def test_checksummed_address_is_normalised_and_bitcoin_works(live_server_url, job_worker):
    from compliance.addresses import ethereum_checksum

    names = await database_sync_to_async(build_graph)("cs")
    me = unique("analyst")
    btc = encode_bitcoin_address("p2wpkh", hashlib.sha256(b"btc-unknown").digest()[:20])
    await database_sync_to_async(ensure_chain)("bitcoin")
    async with await connected(live_server_url, me) as client:
        await client.send(
            "address_analysis", {"chain": "ethereum", "address": ethereum_checksum(names["target"])}, id="cs"
        )
        frames = await frames_until(client, "cs", DONE)
        assert frames[-1]["event"] == "address_analysis_completed"
        assert frames[-2]["data"]["address"] == names["target"] and frames[-2]["data"]["hops"] == 2
        await client.send("address_analysis", {"chain": "bitcoin", "address": btc.upper()}, id="b")
        frames = await frames_until(client, "b", DONE)
        assert frames[-2]["data"]["known"] is False and frames[-2]["data"]["address"] == btc


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"chain": "ethereum", "address": "0x1234"}, "address"),
        ({"chain": "ethereum", "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"}, "address"),  # bad checksum
        ({"chain": "bitcoin", "address": "1BoatSLRHtKNngkdXEeobR76b53LETtpyX"}, "address"),
        ({"chain": "ethereum", "address": eth("x"), "hops": 6}, "hops"),
        ({"chain": "ethereum", "address": eth("x"), "hops": 0}, "hops"),
        ({"chain": "ethereum"}, "address"),
        ({"chain": "ethereum", "address": eth("x"), "extra": 1}, "extra"),
    ],
)
async def test_invalid_analysis_requests_get_validation_error(live_server_url, payload, field):
    async with await connected(live_server_url, unique("analyst")) as client:
        reply = await client.request("address_analysis", payload, id="bad")
        assert reply["event"] == "validation_error", reply
        assert field in reply["data"]["errors"] and reply["data"]["event"] == "address_analysis"


async def test_unknown_chain_is_not_found_on_the_analysis_error_event(live_server_url):
    async with await connected(live_server_url, unique("analyst")) as client:
        reply = await client.request("address_analysis", {"chain": "dogecoin", "address": "D123"}, id="dc")
        assert reply["event"] == "address_analysis_error"
        assert reply["data"]["code"] == "NOT_FOUND"
        pong = await client.request("ping", id="p")
        assert pong["event"] == "pong"


async def test_ofac_addresses_score_severe_over_the_socket(live_server_url, job_worker):
    await database_sync_to_async(import_ofac_lists)(ofac_dir())
    picks = await database_sync_to_async(
        lambda: [
            AddressLabel.objects.filter(source=source, delisted_at=None).values_list("address__address", flat=True)[0]
            for source in ("ofac:ETH", "ofac:XBT")
        ]
    )()
    async with await connected(live_server_url, unique("analyst")) as client:
        for n, (chain, address) in enumerate(zip(("ethereum", "bitcoin"), picks, strict=True)):
            await client.send("address_analysis", {"chain": chain, "address": address, "hops": 1}, id=f"o{n}")
            frames = await frames_until(client, f"o{n}", DONE)
            response = frames[-2]["data"]
            assert response["riskLevel"] == "severe" and response["riskScore"] == 100, response
            owned = next(s for s in response["signals"] if s["rule"] == "SANCTIONS_OWNERSHIP")
            assert owned["sources"][0]["source"].startswith("ofac:") and owned["sources"][0]["confidence"] == 100


# --- charging, failure, crash and resume --------------------------------------------------------


async def test_analysis_is_charged_on_success_and_refunded_on_failure(live_server_url, settings, monkeypatch):
    settings.LEDGERCORE_PRICES = {"address_analysis": 7}
    settings.LEDGERCORE_JOBS = "inprocess"  # the failure is injected in this process
    names = await database_sync_to_async(build_graph)("ch")
    me = unique("payer")
    user_pk, app = await fund(me, 100)
    async with await connected(live_server_url, me) as client:
        await client.send("address_analysis", {"chain": "ethereum", "address": names["target"]}, id="ok")
        frames = await frames_until(client, "ok", DONE)
        assert frames[-1]["event"] == "address_analysis_completed"
        balance = await database_sync_to_async(credits.get_balance)(user_pk, app)
        assert balance.balance == 93

        def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(jobs, "analyse_address", broken)
        await client.send("address_analysis", {"chain": "ethereum", "address": names["target"]}, id="bad")
        frames = await frames_until(client, "bad", DONE)
        error = frames[-1]
        assert error["event"] == "address_analysis_error" and error["data"]["code"] == "INTERNAL"
        assert error["data"]["jobId"] == frames[0]["data"]["jobId"]
    for _ in range(50):
        balance = await database_sync_to_async(credits.get_balance)(user_pk, app)
        if balance.balance == 93:
            break
        await asyncio.sleep(0.1)
    assert balance.balance == 93  # the failed job's hold was released
    holds = await database_sync_to_async(lambda: sorted(Hold.objects.values_list("status", flat=True)))()
    assert holds == ["captured", "released"]


async def test_an_analysis_whose_requester_disconnects_is_still_charged_when_it_completes(
    live_server_url, settings, monkeypatch
):
    """The job owns the charge once it exists: the requester closes while it
    runs; the job completes, captures the hold and pushes its result to the
    user's room; the balance is charged once, not refunded."""
    settings.LEDGERCORE_PRICES = {"address_analysis": 7}
    settings.LEDGERCORE_JOBS = "inprocess"
    names = await database_sync_to_async(build_graph)("dc")
    me = unique("leaver")
    user_pk, app = await fund(me, 100)
    gate = threading.Event()
    real = jobs.analyse_address

    def held(*args: Any, **kwargs: Any) -> dict[str, Any]:
        assert gate.wait(20), "the test never let the job go on"
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "analyse_address", held)
    async with await connected(live_server_url, me) as watcher:  # another tab: gets the pushed result
        requester = await connected(live_server_url, me)
        await requester.send("address_analysis", {"chain": "ethereum", "address": names["target"]}, id="gone")
        job_id = (await requester.expect("address_analysis_started"))["data"]["jobId"]
        await requester.close()
        await asyncio.sleep(0.3)  # the closed connection's request is cancelled meanwhile
        gate.set()
        try:
            await watcher.expect("address_analysis_completed", timeout=20, jobId=job_id)
        except AssertionError as exc:
            job = await database_sync_to_async(AnalysisJob.objects.get)(pk=job_id)
            raise AssertionError(f"{exc}; job: {job.status} {job.stage} {job.error_code} {job.error_message}") from None
    for _ in range(50):
        balance = await database_sync_to_async(credits.get_balance)(user_pk, app)
        if balance.balance == 93:
            break
        await asyncio.sleep(0.1)
    assert balance.balance == 93
    holds = await database_sync_to_async(lambda: list(Hold.objects.values_list("status", flat=True)))()
    assert holds == ["captured"]


def _stale_job(user_id: str, address: str, attempts: int, reference: str = "") -> AnalysisJob:
    user = accounts.get_or_create_user(user_id)
    job = jobs.create_job(
        user_pk=user.pk,
        application_id=user.default_application_id or "",
        chain="ethereum",
        address=address,
        hops=1,
        charge_reference=reference,
    )
    AnalysisJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING,
        attempts=attempts,
        started_at=timezone.now() - timedelta(minutes=5),
        heartbeat_at=timezone.now() - timedelta(minutes=5),
        stage="expand_hop_1",
        pct=40,
    )
    return job


def test_a_stale_running_job_is_retried_once(settings):
    settings.LEDGERCORE_JOBS = "inprocess"
    names = build_graph("re")
    job = _stale_job(unique("crash"), names["target"], attempts=1)
    assert jobs.reap_stale_jobs() == [job.pk]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.finished:
            break
        time.sleep(0.05)
    assert job.status == JobStatus.COMPLETED and job.attempts == 2
    assert job.result == jobs.analyse_address("ethereum", names["target"], 1)
    assert jobs.reap_stale_jobs() == []


def test_a_job_interrupted_twice_is_failed_and_refunded(settings):
    settings.LEDGERCORE_PRICES = {"address_analysis": 9}
    names = build_graph("rf")
    user_id = unique("crash")
    user, app = funded(user_id, 50, reason="grant")
    hold = credits.hold_credits(
        user.pk, app, 9, action="address_analysis", actor=credits.Actor.user(user_id), reference="sid:req"
    )
    assert credits.get_balance(user.pk, app).balance == 41
    job = _stale_job(user_id, names["target"], attempts=2, reference="sid:req")
    assert jobs.reap_stale_jobs() == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "INTERNAL" and job.finished_at is not None
    hold.refresh_from_db()
    assert hold.status == Hold.Status.RELEASED
    assert credits.get_balance(user.pk, app).balance == 50
    assert jobs.reap_stale_jobs() == []  # never left running, never reaped twice


async def test_crash_and_resume_over_the_socket(live_server_url, settings, monkeypatch, fast_reaper):
    """The first runner claims the job and dies (heartbeat never moves); the
    waiting request sees it go stale, the reaper retries it, and the client
    gets its response."""
    settings.LEDGERCORE_JOBS = "inprocess"
    names = await database_sync_to_async(build_graph)("cr")
    real_dispatch = jobs.dispatch
    crashed: list[str] = []

    def crashing_dispatch(job_id: str) -> None:
        if not crashed:
            crashed.append(job_id)
            AnalysisJob.objects.filter(pk=job_id).update(
                status=JobStatus.RUNNING, attempts=1, heartbeat_at=timezone.now(), stage="resolve", pct=5
            )
            return
        real_dispatch(job_id)

    monkeypatch.setattr(jobs, "dispatch", crashing_dispatch)
    async with await connected(live_server_url, unique("analyst")) as client:
        await client.send("address_analysis", {"chain": "ethereum", "address": names["target"]}, id="c1")
        frames = await frames_until(client, "c1", DONE, timeout=30)
    assert frames[-1]["event"] == "address_analysis_completed", frames[-1]
    job = await database_sync_to_async(AnalysisJob.objects.get)(pk=crashed[0])
    assert job.attempts == 2 and job.status == JobStatus.COMPLETED
    pcts = [f["data"]["pct"] for f in frames if f["event"] == "address_analysis_progress"]
    assert pcts == sorted(pcts)


@pytest.mark.redis_stack
async def test_scaled_jobs_run_on_db_workers_and_a_dead_workers_job_is_retried(
    live_server_url, settings, tmp_path, fast_reaper
):
    """Tasks backend: the job is enqueued in the database and run by a
    db_worker subprocess; progress reaches this socket through Redis. After
    the worker is killed, a job row it left running (stale heartbeat) is
    retried by the reaper on a new worker."""
    from django.db import connection

    names = await database_sync_to_async(build_graph)("sc")
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=settings.REDIS_URL,
        LEDGERCORE_REDIS_PREFIX=settings.LEDGERCORE_REDIS_PREFIX,
        LEDGERCORE_VAR_DIR=str(tmp_path),
        LEDGERCORE_ANALYSIS_STALE_SECONDS="1",
    )
    worker = DbWorkerProcess(env, tmp_path / "worker.log").start()
    try:
        async with await connected(live_server_url, unique("analyst")) as client:
            await client.send("address_analysis", {"chain": "ethereum", "address": names["target"]}, id="s1")
            frames = await frames_until(client, "s1", DONE, timeout=60)
            assert frames[-1]["event"] == "address_analysis_completed", (frames, worker.logs())
            assert any(f["event"] == "address_analysis_progress" for f in frames)
            job_id = frames[0]["data"]["jobId"]
        # A crash: the row says running, its worker is gone (killed).
        worker.kill()
        stale = await database_sync_to_async(_stale_job)(unique("crash"), names["target"], 1)
        worker = DbWorkerProcess(env, tmp_path / "worker2.log").start()
        await database_sync_to_async(jobs.reap_stale_jobs)()
        for _ in range(300):
            status = await database_sync_to_async(
                lambda: AnalysisJob.objects.values_list("status", flat=True).get(pk=stale.pk)
            )()
            if status == JobStatus.COMPLETED:
                break
            await asyncio.sleep(0.1)
        assert status == JobStatus.COMPLETED, worker.logs()
        assert job_id.startswith("job_")
    finally:
        worker.stop()


# --- address_transactions --------------------------------------------------------------------


def _history(address: str, n: int, start: int, tag: str) -> None:
    chain = ensure_chain("ethereum")
    with GraphWriter(chain) as writer:
        for k in range(n):
            hash_ = txh(f"{tag}-{k}")
            ts = start + (k // 2) * 1000  # pairs share a timestamp: the tx id breaks ties
            writer.add_transaction(TxRow(hash_, 1000 + k, ts, 21_000 * 10**9, TxStatus.SUCCESS))
            if k % 3 == 0:
                writer.add_transfer(TransferRow(hash_, -1, TransferKind.NATIVE, address, eth(f"peer{k}"), ETH + k, ts))
            else:
                peer = eth(f"peer{k}")
                writer.add_transfer(TransferRow(hash_, 0, TransferKind.TOKEN, peer, address, 10**6 * k, ts, USDT))


def test_pages_are_newest_first_without_duplicates_or_gaps_while_transactions_arrive():
    me = eth("history")
    _history(me, 25, 1_700_000_000_000, "h")
    first = history.address_transactions("ethereum", me, limit=10)
    assert len(first.transactions) == 10 and first.next_cursor
    _history(me, 6, 1_800_000_000_000, "new")  # newer than anything paged so far
    second = history.address_transactions("ethereum", me, limit=10, cursor=first.next_cursor)
    third = history.address_transactions("ethereum", me, limit=10, cursor=second.next_cursor)
    assert third.next_cursor is None and len(third.transactions) == 5
    hashes = [t["hash"] for page in (first, second, third) for t in page.transactions]
    assert len(hashes) == len(set(hashes)) == 25
    assert set(hashes) == {txh(f"h-{k}") for k in range(25)}
    times = [t["timestamp"] for page in (first, second, third) for t in page.transactions]
    assert times == sorted(times, reverse=True)
    out = next(t for t in first.transactions if t["hash"] == txh("h-24"))
    assert out == {
        "hash": txh("h-24"),
        "timestamp": 1_700_000_012_000,
        "direction": "out",
        "counterparty": eth("peer24"),
        "asset": "ETH",
        "amount": "1.000000000000000024",
        "blockNumber": 1024,
        "fee": "0.000021",
    }
    token = next(t for t in first.transactions if t["hash"] == txh("h-23"))
    assert (token["direction"], token["asset"], token["amount"]) == ("in", "USDT", "23")
    fresh = history.address_transactions("ethereum", me, limit=6)
    assert {t["hash"] for t in fresh.transactions} == {txh(f"new-{k}") for k in range(6)}


def test_cursors_are_bound_to_their_address():
    me, other = eth("cur-a"), eth("cur-b")
    _history(me, 3, 1_700_000_000_000, "ca")
    page = history.address_transactions("ethereum", me, limit=1)
    assert page.next_cursor
    with pytest.raises(history.BadCursor):
        history.address_transactions("ethereum", other, limit=1, cursor=page.next_cursor)
    with pytest.raises(history.BadCursor):
        history.address_transactions("ethereum", me, limit=1, cursor=page.next_cursor[:-2] + "xx")


async def test_address_transactions_over_the_socket(live_server_url):
    me = eth("ws-history")
    await database_sync_to_async(_history)(me, 7, 1_700_000_000_000, "wh")
    async with await connected(live_server_url, unique("analyst")) as client:
        reply = await client.request("address_transactions", {"chain": "ethereum", "address": me, "limit": 5}, id="t1")
        assert reply["event"] == "address_transactions_response", reply
        data = reply["data"]
        assert data["chain"] == "ethereum" and data["address"] == me and len(data["transactions"]) == 5
        cursor = data["nextCursor"]
        reply = await client.request(
            "address_transactions", {"chain": "ethereum", "address": me, "limit": 5, "cursor": cursor}, id="t2"
        )
        assert len(reply["data"]["transactions"]) == 2 and reply["data"]["nextCursor"] is None
        reply = await client.request("address_transactions", {"chain": "ethereum", "address": me, "limit": 501})
        assert reply["event"] == "validation_error" and "limit" in reply["data"]["errors"]
        reply = await client.request(
            "address_transactions", {"chain": "ethereum", "address": me, "cursor": "forged"}, id="t3"
        )
        assert reply["event"] == "validation_error" and "cursor" in reply["data"]["errors"]
        reply = await client.request("address_transactions", {"chain": "solana2", "address": me}, id="t4")
        assert reply["event"] == "error" and reply["data"]["code"] == "NOT_FOUND"
        reply = await client.request("address_transactions", {"chain": "ethereum", "address": eth("empty")}, id="t5")
        assert reply["data"]["transactions"] == [] and reply["data"]["nextCursor"] is None


# --- cross_border_flows ----------------------------------------------------------------------

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR


def _corridor_graph() -> None:
    chain = ensure_chain("ethereum")
    us = get_or_create_entity("Test US Exchange", "exchange", country="US")
    mx = get_or_create_entity("Test MX Exchange", "exchange", country="MX")
    gb = get_or_create_entity("Test GB Exchange", "exchange", country="GB")
    addresses = {k: eth(f"corr-{k}") for k in ("us1", "us2", "mx1", "gb1", "anon")}
    for key, entity in (("us1", us), ("us2", us), ("mx1", mx), ("gb1", gb)):
        label_address(get_or_create_address(chain, addresses[key]), entity, source="test")
    edges = [
        ("us1", "mx1", 100 * 10**6, USDT, T0 + 10),  # 100 USD
        ("us2", "mx1", 2 * ETH, "", T0 + 20),  # 2 ETH at 3000
        ("us1", "mx1", ETH, "", T0 + 5 * HOUR),  # no candle that hour: unpriced
        ("mx1", "us1", 30 * 10**6, USDC, T0 + 86_400_000 + 1),  # next day, 30 USD inbound
        ("us1", "gb1", 999 * 10**6, USDT, T0 + 30),  # another corridor
        ("anon", "mx1", 5 * 10**6, USDT, T0 + 40),  # unattributed sender
        ("us1", "mx1", 7 * 10**6, USDT, T0 - 10 * 86_400_000),  # outside the window
    ]
    with GraphWriter(chain) as writer:
        for n, (a, b, value, token, ts) in enumerate(edges):
            hash_ = txh(f"corr-{n}")
            writer.add_transaction(TxRow(hash_, n, ts, 0, TxStatus.SUCCESS))
            kind = TransferKind.TOKEN if token else TransferKind.NATIVE
            writer.add_transfer(
                TransferRow(hash_, 0 if token else -1, kind, addresses[a], addresses[b], value, ts, token)
            )
    market.ensure_listing("testvenue", "ETH-USD")
    market.ingest_trades(
        [
            TradeInput("testvenue", "ETH-USD", "1", T0 + 5, Decimal("2990"), Decimal("1"), "buy"),
            TradeInput("testvenue", "ETH-USD", "2", T0 + 50_000, Decimal("3000"), Decimal("1"), "sell"),
        ],
        publish=False,
    )


def test_corridor_totals_on_a_hand_built_graph():
    _corridor_graph()
    result = corridor_flows(parse_corridor("US-MX"), T0 - 86_400_000, T0 + 3 * 86_400_000)
    assert result["totalsUSD"] == {"outbound": 6100.0, "inbound": 30.0, "net": 6070.0}
    assert result["unpricedTransfers"] == 1
    by_key = {(f["direction"], f["day"], f["asset"]): f for f in result["flows"]}
    day0 = time.strftime("%Y-%m-%d", time.gmtime(T0 / 1000))
    day1 = time.strftime("%Y-%m-%d", time.gmtime((T0 + 86_400_000) / 1000))
    assert by_key[("outbound", day0, "USDT")] | {} == {
        "direction": "outbound",
        "day": day0,
        "asset": "USDT",
        "txCount": 1,
        "volume": "100",
        "volumeUSD": 100.0,
        "unpricedTransfers": 0,
    }
    eth_row = by_key[("outbound", day0, "ETH")]
    assert (eth_row["txCount"], eth_row["volume"], eth_row["volumeUSD"], eth_row["unpricedTransfers"]) == (
        1,
        "2",
        6000.0,
        0,
    )
    unpriced = by_key[("outbound", day1, "ETH")]  # T0 is 22:00 UTC: five hours later is the next day
    assert (unpriced["volume"], unpriced["volumeUSD"], unpriced["unpricedTransfers"]) == ("1", None, 1)
    assert by_key[("inbound", day1, "USDC")]["volumeUSD"] == 30.0
    assert len(result["flows"]) == 4
    reverse = corridor_flows(parse_corridor("MX-US"), T0 - 86_400_000, T0 + 3 * 86_400_000)
    assert reverse["totalsUSD"] == {"outbound": 30.0, "inbound": 6100.0, "net": -6070.0}


async def test_cross_border_flows_over_the_socket(live_server_url):
    await database_sync_to_async(_corridor_graph)()
    window = {"from": T0 - 86_400_000, "to": T0 + 3 * 86_400_000}
    async with await connected(live_server_url, unique("analyst")) as client:
        reply = await client.request("cross_border_flows", {"corridor": "US-MX", "window": window}, id="f1")
        assert reply["event"] == "cross_border_flows_response", reply
        assert reply["data"]["corridor"] == "US-MX" and reply["data"]["totalsUSD"]["net"] == 6070.0
        reply = await client.request("cross_border_flows", {"corridor": "US-MX", "window": "30d"}, id="f2")
        assert reply["event"] == "cross_border_flows_response"  # the graph is older than 30 days
        assert reply["data"]["flows"] == [] and reply["data"]["totalsUSD"]["outbound"] == 0
        for corridor in ("US-XX", "USMX", "US-US", "us-mx"):
            reply = await client.request("cross_border_flows", {"corridor": corridor, "window": "7d"})
            assert reply["event"] == "validation_error" and "corridor" in reply["data"]["errors"], corridor
        reply = await client.request("cross_border_flows", {"corridor": "US-MX", "window": "400d"})
        assert reply["event"] == "validation_error" and "window" in reply["data"]["errors"]


def test_compliance_events_are_in_the_asyncapi_document():
    from realtime.asyncapi import build_document

    messages = build_document()["channels"]["ws"]["messages"]
    for name in (
        "address_analysis",
        "address_analysis_started",
        "address_analysis_progress",
        "address_analysis_response",
        "address_analysis_completed",
        "address_analysis_error",
        "address_transactions",
        "address_transactions_response",
        "cross_border_flows",
        "cross_border_flows_response",
    ):
        assert messages[name]["tags"] == [{"name": "Compliance"}], name
    assert messages["address_analysis"]["x-ledgercore"]["price"] == "address_analysis"
    assert messages["address_analysis"]["x-ledgercore"]["errorEvent"] == "address_analysis_error"

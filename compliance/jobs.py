"""Address analysis jobs: durable rows, run off the event loop, progress
published through the channel layer.

Where a job runs (``LEDGERCORE_JOBS``):

- ``inprocess`` (embedded default): a small thread pool of the server
  process; nothing else to start.
- ``tasks`` (PostgreSQL default): a Django task (``compliance.tasks``) on the
  durable ``django_tasks_db`` backend, run by ``manage.py db_worker`` on any
  machine.

Either way the runner publishes each step to the channel-layer group
``analysis-job.<jobId>`` (which the requesting connection listens on,
whichever process it lives in) and the final response, completion or error
also to the user's room ``user:<userId>`` so that another tab or a
reconnected client gets it. The row is the source of truth: a listener that
missed a message reads it.

A job whose heartbeat stops (its worker died) is reaped: put back in the
queue once, and failed the second time, its credit hold released. The
reaper runs when a runner starts, every few seconds in each server process
that has requested an analysis, and from a waiting request that sees its own
job go stale.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from compliance import analysis, graph
from compliance.graph import AssetFact, EdgeBatch, LabelFact
from compliance.models import Address, AnalysisJob, Cluster, JobStatus
from compliance.walk import CLUSTER_LABEL_SAMPLE, ClusterFact, Limits, Progress, Walk
from credits import interface as credits
from credits.interface import Hold
from realtime import lifecycle, push

log = logging.getLogger(__name__)

ACTION = "address_analysis"
MAX_ATTEMPTS = 2  # the first run and one retry
JOB_EVENT = "compliance.job"


# --- the database as a GraphSource --------------------------------------------------------


class DatabaseGraph:
    """``GraphSource`` over the stored graph (compliance.graph reads)."""

    def edges(self, ids: Collection[int], walk: Walk, limit: int) -> EdgeBatch:
        return graph.transfers_touching(ids, direction=walk, limit=limit)

    def labels(self, ids: Collection[int]) -> dict[int, list[LabelFact]]:
        return graph.active_labels(ids)

    def clusters(self, ids: Collection[int]) -> dict[int, ClusterFact]:
        membership = graph.clusters_of(ids)
        if not membership:
            return {}
        rows = Cluster.objects.filter(id__in=set(membership.values())).values_list(
            "id", "heuristic", "size", "entity_id", "entity__name", "entity__category", "entity__country"
        )
        facts: dict[int, ClusterFact] = {}
        for cid, heuristic, size, entity_id, name, category, country in rows:
            entity = None
            if entity_id is not None:
                entity = LabelFact(0, entity_id, name, category, country, f"cluster:{heuristic}", "", 100)
            facts[cid] = ClusterFact(cid, heuristic, size, entity)
        return {address: facts[cid] for address, cid in membership.items() if cid in facts}

    def cluster_labels(self, cluster_id: int, exclude: int) -> list[LabelFact]:
        # Giant clusters are read up to a sample: enough to attribute them.
        members = [m for m in graph.cluster_members(cluster_id, limit=CLUSTER_LABEL_SAMPLE) if m != exclude]
        return [label for facts in graph.active_labels(members).values() for label in facts]

    def tx_hashes(self, tx_ids: Collection[int]) -> dict[int, str]:
        return graph.transaction_hashes(tx_ids)

    def address_strings(self, ids: Collection[int]) -> dict[int, str]:
        return graph.address_strings(ids)

    def assets(self, ids: Collection[int]) -> dict[int, AssetFact]:
        return graph.assets(ids)


def limits() -> Limits:
    return Limits(
        max_edges_per_hop=settings.LEDGERCORE_ANALYSIS_MAX_EDGES_PER_HOP,
        max_edges=settings.LEDGERCORE_ANALYSIS_MAX_EDGES,
        max_frontier=settings.LEDGERCORE_ANALYSIS_MAX_FRONTIER,
    )


def analyse_address(
    chain: str, address: str, hops: int = 2, *, progress: Progress | None = None, bounds: Limits | None = None
) -> dict[str, Any]:
    """The risk analysis of a stored (or never seen) address, synchronously.
    ``address`` must be in its normal form (compliance.addresses)."""
    ids = graph.address_ids(chain, [address])
    target = ids.get(address)
    if target is None:
        # Screening-only rows (an OFAC address never seen in a transfer) exist too.
        target = Address.objects.filter(chain__code=chain, address=address).values_list("id", flat=True).first()
    return analysis.analyse(
        DatabaseGraph(), target, chain=chain, address=address, hops=hops, limits=bounds or limits(), progress=progress
    )


# --- publishing ------------------------------------------------------------------------------


def job_group(job_id: str) -> str:
    return f"analysis-job.{job_id}"


def _publish(job: AnalysisJob | dict[str, Any], event: str, data: dict[str, Any], *, to_user: bool = False) -> None:
    """Best effort: the row already holds what was published."""
    job_id = job["id"] if isinstance(job, dict) else job.id
    user_id = job["user__username"] if isinstance(job, dict) else job.user.username
    layer = get_channel_layer()
    try:
        async_to_sync(layer.group_send)(job_group(job_id), {"type": JOB_EVENT, "event": event, "data": data})
        if to_user:
            async_to_sync(push.send_to_user)(user_id, event, data)
    except Exception:  # e.g. no process serves connections (embedded layer in a worker)
        log.debug("could not publish %s of %s", event, job_id, exc_info=True)


def response_payload(job: AnalysisJob) -> dict[str, Any]:
    return {"jobId": job.id, **(job.result or {})}


# --- lifecycle -------------------------------------------------------------------------------


def new_job_id() -> str:
    return f"job_{secrets.token_hex(12)}"


def create_job(
    *,
    user_pk: int,
    application_id: str,
    chain: str,
    address: str,
    hops: int,
    charge_reference: str = "",
    request_id: str = "",
) -> AnalysisJob:
    """The job row; from its commit on, the job owns the request's hold
    (found by ``charge_reference``): it is no longer released when the
    requesting process dies, but captured or released by the job."""
    with transaction.atomic():
        job = AnalysisJob.objects.create(
            id=new_job_id(),
            user_id=user_pk,
            application_id=application_id,
            chain=chain,
            address=address,
            hops=hops,
            charge_reference=charge_reference[:200],
            request_id=request_id[:64],
        )
        if charge_reference:
            Hold.objects.filter(
                account__user_id=user_pk,
                account__application_id=application_id,
                action=ACTION,
                reference=charge_reference[:200],
                status=Hold.Status.PENDING,
            ).update(owner="")
    return job


def _claim(job_id: str) -> bool:
    now = timezone.now()
    return bool(
        AnalysisJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            started_at=now,
            heartbeat_at=now,
            stage="",
        )
    )


class _Heartbeat(threading.Thread):
    def __init__(self, job_id: str) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id = job_id
        self.stop = threading.Event()

    def run(self) -> None:
        interval = max(settings.LEDGERCORE_ANALYSIS_STALE_SECONDS / 3, 0.2)
        try:
            while not self.stop.wait(interval):
                AnalysisJob.objects.filter(pk=self.job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())
        except Exception:  # the job itself reports failures
            log.warning("heartbeat of %s stopped", self.job_id, exc_info=True)
        finally:
            connection.close()


class JobAbandoned(Exception):
    """The row left the running state under us (reaped, timed out)."""


def run_job(job_id: str) -> str:
    """Run a queued job to its end in this thread; returns its final status
    (or the status it already had when it was not ours to run)."""
    reap_stale_jobs()
    if not _claim(job_id):
        return str(AnalysisJob.objects.filter(pk=job_id).values_list("status", flat=True).first() or "missing")
    job = AnalysisJob.objects.select_related("user").get(pk=job_id)
    started = time.monotonic()
    beat = _Heartbeat(job_id)
    beat.start()
    last = -1

    def progress(stage: str, pct: int) -> None:
        nonlocal last
        pct = max(pct, last, 0)
        updated = AnalysisJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            stage=stage, pct=pct, heartbeat_at=timezone.now()
        )
        if not updated:
            raise JobAbandoned(job_id)
        last = pct
        _publish(job, "address_analysis_progress", {"jobId": job_id, "stage": stage, "pct": pct})

    try:
        result = analyse_address(job.chain, job.address, job.hops, progress=progress)
    except JobAbandoned:
        log.info("analysis job %s was taken from this worker", job_id)
        return "abandoned"
    except Exception as exc:
        log.exception("analysis job %s failed", job_id)
        fail_job(job_id, "INTERNAL", f"the analysis failed ({type(exc).__name__}); nothing was charged")
        return JobStatus.FAILED
    finally:
        beat.stop.set()
    duration = round((time.monotonic() - started) * 1000)
    try:
        # Completed and charged in one transaction: never one without the other.
        with transaction.atomic():
            done = AnalysisJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
                status=JobStatus.COMPLETED,
                stage="done",
                pct=100,
                result=result,
                finished_at=timezone.now(),
                duration_ms=duration,
            )
            if done:
                capture_charge(job)
    except Exception:
        # Neither was written: the job's heartbeat has stopped, so the
        # reaper runs it again (or fails and refunds it after its last try).
        log.exception("analysis job %s: its completion was not recorded; it will be retried", job_id)
        return "abandoned"
    if not done:
        return "abandoned"
    job.result = result
    _publish(job, "address_analysis_response", response_payload(job), to_user=True)
    _publish(job, "address_analysis_completed", {"jobId": job_id, "durationMs": duration}, to_user=True)
    return JobStatus.COMPLETED


def fail_job(job_id: str, code: str, message: str) -> bool:
    """Fail a job that has not finished, release its credit hold, tell its
    listeners. False when it had already finished."""
    now = timezone.now()
    failed = (
        AnalysisJob.objects.filter(pk=job_id)
        .exclude(status__in=(JobStatus.COMPLETED, JobStatus.FAILED))
        .update(status=JobStatus.FAILED, error_code=code, error_message=message[:500], finished_at=now)
    )
    if not failed:
        return False
    job = AnalysisJob.objects.select_related("user").get(pk=job_id)
    if code in ("INTERNAL", "TIMEOUT", "UNAVAILABLE"):
        release_charge(job)
    _publish(job, "address_analysis_error", {"jobId": job_id, "code": code, "message": message}, to_user=True)
    return True


def _pending_holds(job: AnalysisJob) -> list[tuple[int, int]]:
    """(id, amount) of the pending holds taken for this job's request."""
    if not job.charge_reference:
        return []
    return list(
        Hold.objects.filter(
            account__user_id=job.user_id,
            account__application_id=job.application_id,
            action=ACTION,
            reference=job.charge_reference,
            status=Hold.Status.PENDING,
        ).values_list("pk", "amount")
    )


def capture_charge(job: AnalysisJob) -> int:
    """Capture the hold taken for this completed job in full (the requesting
    connection may be gone); capturing twice is harmless."""
    holds = _pending_holds(job)
    for hold_id, amount in holds:
        credits.capture_hold(hold_id, amount, actor=credits.Actor.system())
    return len(holds)


def release_charge(job: AnalysisJob) -> int:
    """Release the pending hold taken for this job (the requesting process
    may be gone); releasing twice is harmless (credits.release_hold)."""
    holds = _pending_holds(job)
    for hold_id, _ in holds:
        credits.release_hold(hold_id, actor=credits.Actor.system(), reason=f"analysis {job.id} failed: refunded")
    return len(holds)


def reap_stale_jobs() -> list[str]:
    """Running jobs whose heartbeat is stale: queued again (and dispatched)
    while attempts remain, else failed (INTERNAL) and refunded."""
    cutoff = timezone.now() - timedelta(seconds=settings.LEDGERCORE_ANALYSIS_STALE_SECONDS)
    stale = list(
        AnalysisJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).values_list("id", "attempts")
    )
    reaped = []
    for job_id, attempts in stale:
        if attempts < MAX_ATTEMPTS:
            requeued = AnalysisJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).update(
                status=JobStatus.QUEUED, stage="requeued"
            )
            if requeued:
                log.warning("analysis job %s lost its worker; retrying", job_id)
                dispatch(job_id)
                reaped.append(job_id)
        elif fail_job(job_id, "INTERNAL", "the analysis was interrupted twice; it was refunded"):
            log.warning("analysis job %s lost its worker again; failed", job_id)
            reaped.append(job_id)
    return reaped


# --- runners ---------------------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_reaper: threading.Thread | None = None


# Jobs handed to this process's pool and not yet ended (inprocess runner).
_local: set[str] = set()


def _run_in_thread(job_id: str) -> None:
    try:
        run_job(job_id)
    except Exception:
        log.exception("analysis job %s crashed its worker thread", job_id)
    finally:
        _local.discard(job_id)
        connection.close()


def stop_local_jobs() -> int:
    """Shutdown: fail (and refund) the jobs queued or running in this
    process's pool; a running one stops at its next step."""
    stopped = 0
    try:
        for job_id in list(_local):
            if fail_job(job_id, "UNAVAILABLE", "the server running the analysis shut down; it was refunded, retry it"):
                stopped += 1
            _local.discard(job_id)
    finally:
        connection.close()
    return stopped


lifecycle.add_work(lifecycle.Work("address analyses", busy=lambda: len(_local), stop=stop_local_jobs))


def _reaper_loop() -> None:
    while True:
        time.sleep(max(settings.LEDGERCORE_ANALYSIS_STALE_SECONDS / 2, 0.5))
        try:
            close_old_connections()
            reap_stale_jobs()
        except Exception:  # keep reaping; the database may come back
            log.warning("reaping analysis jobs failed", exc_info=True)
        finally:
            connection.close()


def start_reaper() -> None:
    """The periodic reaper of this process (started on first use)."""
    global _reaper
    with _pool_lock:
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(target=_reaper_loop, name="analysis-reaper", daemon=True)
            _reaper.start()


# How a job reaches ``manage.py db_worker`` (``LEDGERCORE_JOBS=tasks``): the
# enqueue of compliance.tasks.run_analysis, plugged in by compliance.apps at
# ready(), since that task module imports this one to run the job.
_enqueue_task: Callable[[str], object] | None = None


def use_task_queue(enqueue: Callable[[str], object]) -> None:
    global _enqueue_task
    _enqueue_task = enqueue


def dispatch(job_id: str) -> None:
    """Hand a queued job to the configured runner."""
    global _pool
    if settings.LEDGERCORE_JOBS == "tasks":
        if _enqueue_task is None:
            raise RuntimeError("no task queue for analysis jobs: compliance.apps plugs it in at ready()")
        _enqueue_task(job_id)
        return
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(settings.LEDGERCORE_ANALYSIS_WORKERS, thread_name_prefix="analysis")
    _local.add(job_id)
    _pool.submit(_run_in_thread, job_id)

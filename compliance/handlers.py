"""Compliance events (section "Compliance (LedgerBrain)" of the event
reference): ``address_analysis`` (a durable job with progress),
``address_transactions`` (keyset pages), ``cross_border_flows``; and the
``address:<chain>:<address>`` room namespace.

Charging of ``address_analysis``: the registry holds the price before the
handler runs and captures it when the handler returns, releases it when the
handler fails with INTERNAL or TIMEOUT. The handler therefore waits for its
job to end (it runs as a concurrent task, so the connection keeps
answering): a job that fails, times out or is reaped after its worker died
twice ends the request with INTERNAL/TIMEOUT and the hold is released. The
job also records the hold's reference, so the reaper releases it even when
the requesting process is gone; a hold nobody settles is released at its
TTL (``LEDGERCORE_HOLD_TTL_SECONDS``, above the analysis time limit).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from compliance import flows, history, jobs
from compliance.addresses import InvalidAddress, UnknownChain, normalize_address, normalize_chain_address
from compliance.models import AnalysisJob, JobStatus
from compliance.payloads import (
    AnalysisErrorPayload,
    AnalysisRequest,
    AnalysisResponsePayload,
    CompletedPayload,
    FlowsRequest,
    FlowsResponsePayload,
    JobIdPayload,
    ProgressPayload,
    TransactionsRequest,
    TransactionsResponsePayload,
    TransactionsUpdatePayload,
)
from realtime import processes
from realtime.context import RequestContext
from realtime.errors import NotFound, ProtocolError, ValidationFailed
from realtime.registry import registry
from realtime.rooms import Namespace, register_namespace

CATEGORY = "Compliance"
POLL_SECONDS = 1.0  # with no message for this long, the job row is read


# --- address_analysis -------------------------------------------------------------------


class AnalysisFailed(ProtocolError):
    def __init__(self, job_id: str | None, code: str, message: str) -> None:
        super().__init__(message, jobId=job_id)
        self.code = code


def _job_state(job_id: str) -> AnalysisJob:
    return AnalysisJob.objects.get(pk=job_id)


async def _emit_final(ctx: RequestContext, job: AnalysisJob, response_sent: bool) -> None:
    if job.status == JobStatus.COMPLETED:
        if not response_sent:
            await ctx.send("address_analysis_response", jobs.response_payload(job))
        await ctx.send("address_analysis_completed", {"jobId": job.id, "durationMs": job.duration_ms or 0})
        return
    raise AnalysisFailed(job.id, job.error_code or "INTERNAL", job.error_message or "the analysis failed")


async def _follow(ctx: RequestContext, job_id: str, channel: str) -> None:
    """Forward the job's events to this request until it ends."""
    layer = get_channel_layer()
    assert layer is not None
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def pump() -> None:
        while True:
            queue.put_nowait(await layer.receive(channel))

    pumping = asyncio.create_task(pump())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.LEDGERCORE_ANALYSIS_TIME_LIMIT_SECONDS
    last: tuple[str, int] = ("", -1)
    response_sent = False
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                message = f"the analysis ran past {settings.LEDGERCORE_ANALYSIS_TIME_LIMIT_SECONDS:g} s; refunded"
                if await database_sync_to_async(jobs.fail_job)(job_id, "TIMEOUT", message):
                    raise AnalysisFailed(job_id, "TIMEOUT", message)
                await _emit_final(ctx, await database_sync_to_async(_job_state)(job_id), response_sent)
                return
            try:
                message_in = await asyncio.wait_for(queue.get(), min(POLL_SECONDS, remaining))
            except TimeoutError:
                job = await database_sync_to_async(_job_state)(job_id)
                if job.finished:
                    await _emit_final(ctx, job, response_sent)
                    return
                if job.status == JobStatus.RUNNING and (job.stage, job.pct) != last and job.pct >= last[1]:
                    last = (job.stage, job.pct)
                    await ctx.send("address_analysis_progress", {"jobId": job_id, "stage": job.stage, "pct": job.pct})
                await database_sync_to_async(jobs.reap_stale_jobs)()
                continue
            event, data = message_in.get("event"), message_in.get("data", {})
            if event == "address_analysis_progress":
                if data["pct"] >= last[1] and (data["stage"], data["pct"]) != last:
                    last = (data["stage"], data["pct"])
                    await ctx.send(event, data)
            elif event == "address_analysis_response":
                response_sent = True
                await ctx.send(event, data)
            elif event in ("address_analysis_completed", "address_analysis_error"):
                await _emit_final(ctx, await database_sync_to_async(_job_state)(job_id), response_sent)
                return
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pumping


@registry.on(
    "address_analysis",
    AnalysisRequest,
    summary="Explainable risk analysis of an address: a job with progress, then the score and its signals.",
    replies=(
        "address_analysis_started",
        "address_analysis_progress",
        "address_analysis_response",
        "address_analysis_completed",
        "address_analysis_error",
    ),
    throttle="expensive",
    price=jobs.ACTION,
    error_event="address_analysis_error",
    concurrent=True,
    category=CATEGORY,
)
async def address_analysis(ctx: RequestContext, data: dict[str, Any]) -> None:
    chain = data["chain"]
    address = normalize_address(chain, data["address"])  # UnknownChain: NOT_FOUND
    reference = f"{ctx.sid}:{ctx.request_id}" if ctx.request_id is not None else ""
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()

    async def start() -> str:
        job = await database_sync_to_async(jobs.create_job)(
            user_pk=ctx.user_pk,
            application_id=ctx.application_id,
            chain=chain,
            address=address,
            hops=data["hops"],
            charge_reference=reference,
            request_id="" if ctx.request_id is None else str(ctx.request_id),
        )
        # Listen before the job can start, so no step is missed.
        await layer.group_add(jobs.job_group(job.id), channel)
        jobs.start_reaper()
        await database_sync_to_async(jobs.dispatch)(job.id)
        return str(job.id)

    # Once created, the job owns the charge: it captures the hold (found by
    # this reference) when it completes, even if this connection has closed
    # by then. Creation and dispatch are shielded, so a connection closing
    # meanwhile cannot leave a job created and never dispatched.
    ctx.meter.handed_over = bool(reference)
    starting = asyncio.ensure_future(start())
    _STARTING.add(starting)
    starting.add_done_callback(_STARTING.discard)
    job_id = await asyncio.shield(starting)
    try:
        await ctx.send("address_analysis_started", {"jobId": job_id})
        await _follow(ctx, job_id, channel)
    finally:
        await layer.group_discard(jobs.job_group(job_id), channel)


_STARTING: set[asyncio.Future[str]] = set()
# Every server process looks for analyses whose worker died, not only those
# that requested one since they started.
processes.every_heartbeat("reaping analysis jobs", jobs.reap_stale_jobs)


# --- address_transactions, cross_border_flows ---------------------------------------------


@registry.on(
    "address_transactions",
    TransactionsRequest,
    summary="Transactions of an address, newest first, in keyset pages (opaque nextCursor).",
    replies=("address_transactions_response",),
    category=CATEGORY,
)
async def address_transactions(ctx: RequestContext, data: dict[str, Any]) -> None:
    chain = data["chain"]
    address = normalize_address(chain, data["address"])
    try:
        page = await database_sync_to_async(history.address_transactions)(
            chain, address, limit=data["limit"], cursor=data.get("cursor")
        )
    except history.BadCursor as exc:
        raise ValidationFailed("invalid cursor", {"cursor": [str(exc)]}) from None
    await ctx.send(
        "address_transactions_response",
        {"chain": chain, "address": address, "transactions": page.transactions, "nextCursor": page.next_cursor},
    )


@registry.on(
    "cross_border_flows",
    FlowsRequest,
    summary="Value moved between entities of two countries, by direction, asset and day, with USD totals.",
    replies=("cross_border_flows_response",),
    throttle="expensive",
    category=CATEGORY,
)
async def cross_border_flows(ctx: RequestContext, data: dict[str, Any]) -> None:
    start, end = data["window"]
    result = await database_sync_to_async(flows.cross_border_flows)(data["corridor"], start, end)
    await ctx.send("cross_border_flows_response", result)


for _name, _payload, _summary in [
    ("address_analysis_started", JobIdPayload, "The analysis job was created; its id."),
    ("address_analysis_progress", ProgressPayload, "The job reached a stage; pct never decreases."),
    (
        "address_analysis_response",
        AnalysisResponsePayload,
        "The result; also pushed (without id) to user:<userId>. Amounts are in the asset's own units.",
    ),
    ("address_analysis_completed", CompletedPayload, "The job finished; also pushed to user:<userId>."),
    ("address_analysis_error", AnalysisErrorPayload, "The request or its job failed (refunded on INTERNAL/TIMEOUT)."),
    ("address_transactions_response", TransactionsResponsePayload, "A page of an address's transactions."),
    ("cross_border_flows_response", FlowsResponsePayload, "Flows of a corridor in a window."),
    (
        "address_transactions_update",
        TransactionsUpdatePayload,
        (
            "To address:<chain>:<address>: transactions of the address just ingested from the chain, newest first "
            "(entries as in address_transactions_response; at least once: dedupe by hash and asset)."
        ),
    ),
]:
    registry.outbound(_name, _payload, summary=_summary, category=CATEGORY)


# --- the address room ---------------------------------------------------------------------


async def _authorize_address_room(ctx: RequestContext, rest: str) -> None:
    # Pure computation (checksums), no database: fine on the event loop.
    chain, _, address = rest.partition(":")
    try:
        normalize_chain_address(chain, address)
    except UnknownChain:
        raise NotFound(f"unknown chain {chain[:40]!r}", room=f"address:{rest}") from None
    except InvalidAddress as exc:
        raise ValidationFailed("bad address", {"room": [f"Not a valid {chain} address: {exc}"]}) from None


def _canonical_address_room(rest: str) -> str:
    """``<chain>:<address>`` with the address in its normal form (EIP-55 for
    Ethereum), so that every spelling of one address is one room."""
    chain, _, address = rest.partition(":")
    return f"{chain}:{normalize_chain_address(chain, address)}"


register_namespace(
    Namespace(
        "address",
        _authorize_address_room,
        presence_events=False,
        description=(
            "New transactions of a watched address (address_transactions_update); open to any authenticated "
            "user. Any spelling of the address joins the room of its normal form, which subscribed names."
        ),
        canonical=_canonical_address_room,
    )
)

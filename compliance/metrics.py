"""The analysis job queue's figures at scrape time (``realtime.metrics``)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from compliance.models import AnalysisJob, JobStatus


def collect() -> Iterable[Metric]:
    counts = dict(
        AnalysisJob.objects.filter(status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    jobs = GaugeMetricFamily("ledgercore_analysis_jobs", "Address analysis jobs queued or running.", labels=["status"])
    for status in (JobStatus.QUEUED, JobStatus.RUNNING):
        jobs.add_metric([str(status)], float(counts.get(status, 0)))
    yield jobs

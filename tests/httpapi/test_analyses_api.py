"""GET /api/compliance/analyses/: the caller's own jobs in the bound application."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from compliance import jobs
from compliance.models import AnalysisJob, JobStatus
from tests.factories import team
from tests.wsclient import dev_token

pytestmark = pytest.mark.django_db

RESULT = {"chain": "ethereum", "address": "0xabc", "hops": 2, "known": False, "riskScore": 0, "riskLevel": "low"}


def _client(user, app: str | None = None) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {dev_token(user.username, app)}")
    return client


def _job(user, app: str, status: str = JobStatus.QUEUED, **fields) -> AnalysisJob:
    job = jobs.create_job(user_pk=user.pk, application_id=app, chain="ethereum", address="0xabc", hops=2)
    AnalysisJob.objects.filter(pk=job.pk).update(status=status, **fields)
    return AnalysisJob.objects.get(pk=job.pk)


def test_a_completed_job_carries_its_result_and_a_failed_one_its_error(alice):
    app = alice.default_application_id
    done = _job(alice, app, JobStatus.COMPLETED, result=RESULT, duration_ms=12, pct=100)
    failed = _job(alice, app, JobStatus.FAILED, error_code="UNAVAILABLE", error_message="node down")
    client = _client(alice)
    body = client.get(f"/api/compliance/analyses/{done.pk}").json()
    assert body["jobId"] == done.pk and body["status"] == "completed" and body["durationMs"] == 12
    assert body["result"] == RESULT and body["error"] is None
    body = client.get(f"/api/compliance/analyses/{failed.pk}").json()
    assert body["result"] is None and body["error"] == {"code": "UNAVAILABLE", "message": "node down"}


def test_the_list_is_own_jobs_of_the_bound_application_newest_first(alice, colleague, outsider):
    app = alice.default_application_id
    first, second = _job(alice, app), _job(alice, app, JobStatus.COMPLETED, result=RESULT)
    theirs = _job(colleague, app)
    _job(outsider, outsider.default_application_id)
    other_app = team(alice, name="side project").pk
    elsewhere = _job(alice, other_app)
    client = _client(alice)
    listed = client.get("/api/compliance/analyses/").json()["results"]
    assert [job["jobId"] for job in listed] == [second.pk, first.pk]
    completed = client.get("/api/compliance/analyses/", {"status": "completed"}).json()["results"]
    assert [job["jobId"] for job in completed] == [second.pk]
    assert client.get(f"/api/compliance/analyses/{theirs.pk}").status_code == 404
    assert client.get(f"/api/compliance/analyses/{elsewhere.pk}").status_code == 404
    bound = _client(alice, other_app).get("/api/compliance/analyses/").json()["results"]
    assert [job["jobId"] for job in bound] == [elsewhere.pk]
    assert client.get("/api/compliance/analyses/", {"status": "nope"}).status_code == 400


def test_anonymous_is_refused():
    assert APIClient().get("/api/compliance/analyses/").status_code in (401, 403)

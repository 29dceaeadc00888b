"""Staff read an analysis result in the admin as a breakdown, not JSON."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote

from compliance.models import AnalysisJob, JobStatus
from tests.factories import UserFactory
from tests.wsclient import unique

RESULT = {
    "jobId": "job_admin",
    "chain": "ethereum",
    "address": "0xabc",
    "hops": 2,
    "known": True,
    "riskScore": 87,
    "riskLevel": "severe",
    "signals": [
        {
            "type": "exposure",
            "category": "sanctions",
            "direction": "in",
            "severity": "severe",
            "hops": 1,
            "amount": "12.5",
            "asset": "ETH",
            "share": 0.4,
            "contribution": 80,
            "rule": "sanctions_direct_in",
            "counterparty": "0xdef",
            "sources": [{"source": "ofac:ETH", "version": "2024-01", "confidence": 100}],
            "path": ["0xtx1"],
            "description": "Received <b>funds</b> directly from a sanctioned address",
        },
        {
            "type": "behaviour",
            "category": None,
            "direction": None,
            "severity": "low",
            "hops": 0,
            "amount": None,
            "asset": None,
            "share": None,
            "contribution": 7,
            "rule": "new_address",
            "counterparty": None,
            "sources": [],
            "path": [],
            "description": "First seen recently",
        },
    ],
    "exposure": [
        {"category": "sanctions", "direction": "in", "asset": "ETH", "direct": "12.5", "indirect": "0", "minHops": 1}
    ],
    "clusters": [],
    "truncated": False,
}


@pytest.mark.django_db
def test_an_analysis_result_reads_as_score_contributions_sanctions_and_exposure(client):
    staff = UserFactory.create(username=unique("staff"), is_staff=True, is_superuser=True)
    owner = UserFactory.create(username=unique("analyst"))
    job = AnalysisJob.objects.create(
        id=unique("job"),
        user=owner,
        application_id=owner.default_application_id,
        chain="ethereum",
        address="0xabc",
        hops=2,
        status=JobStatus.COMPLETED,
        result=RESULT,
    )
    client.force_login(staff)
    page = client.get(f"/admin/compliance/analysisjob/{quote(job.pk)}/change/").content.decode()
    assert "Risk score 87 (severe)" in page
    assert "Sanctions hits (1)" in page and "ofac:ETH 2024-01" in page
    assert "sanctions_direct_in" in page and "new_address" in page and "40.0 %" in page
    assert page.index("sanctions_direct_in") < page.index("new_address")  # largest contribution first
    assert "&lt;b&gt;funds&lt;/b&gt;" in page  # text from the data is escaped
    assert '"riskScore"' not in page  # not the raw JSON

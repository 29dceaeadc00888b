"""The Django task that runs address analyses on the scaled stack
(``LEDGERCORE_JOBS=tasks``): enqueued in the database by the requesting
server process, run by ``manage.py db_worker`` on any machine."""

from __future__ import annotations

from django.tasks import task

from compliance.jobs import run_job


@task()
def run_analysis(job_id: str) -> str:
    return run_job(job_id)

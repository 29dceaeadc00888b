"""Query history and per-application query limits."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


def new_query_id() -> str:
    return "q_" + uuid.uuid4().hex


class QueryRecord(models.Model):
    """One query a user ran (or tried to): the history behind admin and the
    ``query_history`` catalog table."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        TIMEOUT = "timeout", "Timed out"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    id = models.CharField(primary_key=True, max_length=40, default=new_query_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="query_records")
    application = models.ForeignKey("accounts.Application", on_delete=models.CASCADE, related_name="query_records")
    sql = models.TextField()
    compiled_sql = models.TextField(blank=True)
    params = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    rows_returned = models.BigIntegerField(default=0)
    truncated = models.BooleanField(default=False)
    estimated_ms = models.PositiveIntegerField(null=True, blank=True)
    reference = models.CharField(max_length=200, blank=True, help_text="Connection and request id.")
    owner = models.CharField(
        max_length=80, blank=True, help_text="Server process running it; when that process dies the record is failed."
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "application", "status"]),
            models.Index(fields=["user", "application", "created_at"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class QueryLimits(models.Model):
    """Per-application overrides of the LEDGERCORE_QUERY_* defaults; an
    empty field keeps the default."""

    application = models.OneToOneField(
        "accounts.Application", on_delete=models.CASCADE, primary_key=True, related_name="query_limits"
    )
    time_limit_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Milliseconds per query.")
    max_rows = models.PositiveIntegerField(null=True, blank=True, help_text="Rows returned at most; the rest is cut.")
    max_concurrent = models.PositiveIntegerField(
        null=True, blank=True, help_text="Queries one user may run at the same time."
    )
    default_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="LIMIT applied to queries that have none."
    )

    class Meta:
        verbose_name = "query limits"
        verbose_name_plural = "query limits"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(time_limit_ms__isnull=True) | models.Q(time_limit_ms__gte=1),
                name="query_limits_time_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(max_rows__isnull=True) | models.Q(max_rows__gte=1),
                name="query_limits_rows_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"query limits of {self.application_id}"

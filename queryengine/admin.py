"""Admin: query history is read-only; limits are edited per application."""

from __future__ import annotations

from django.contrib import admin

from queryengine.models import QueryLimits, QueryRecord
from realtime.admin import ReadOnlyAdmin


@admin.register(QueryRecord)
class QueryRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "user",
        "application",
        "status",
        "error_code",
        "rows_returned",
        "truncated",
        "duration_ms",
        "created_at",
    )
    list_filter = ("status", "error_code", "truncated", "created_at")
    search_fields = ("id", "user__username", "application__id", "sql", "reference")
    list_select_related = ("user", "application")
    date_hierarchy = "created_at"


@admin.register(QueryLimits)
class QueryLimitsAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("application", "time_limit_ms", "max_rows", "max_concurrent", "default_limit")
    search_fields = ("application__id", "application__name")
    list_filter = (("time_limit_ms", admin.EmptyFieldListFilter), ("max_rows", admin.EmptyFieldListFilter))
    list_select_related = ("application",)
    autocomplete_fields = ("application",)

"""Admin: query history is read-only; limits are edited per application."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from queryengine.models import QueryLimits, QueryRecord


@admin.register(QueryRecord)
class QueryRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(QueryLimits)
class QueryLimitsAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("application", "time_limit_ms", "max_rows", "max_concurrent", "default_limit")
    search_fields = ("application__id", "application__name")
    autocomplete_fields = ("application",)

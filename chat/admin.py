"""Admin: conversations with their messages, read-only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from chat.models import Conversation, Message
from realtime.admin import ReadOnlyAdmin, ReadOnlyInline


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ("created_at", "role", "content", "sql", "tokens", "error_code", "translate_ms", "query_ms", "total_ms")
    readonly_fields = fields
    ordering = ("created_at", "id")


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "title", "owner", "application", "created_at", "updated_at")
    search_fields = ("id", "title", "owner__username", "application__id")
    list_filter = ("created_at", "application")
    list_select_related = ("owner", "application")
    readonly_fields = ("id", "owner", "application", "created_at", "updated_at")
    date_hierarchy = "created_at"
    inlines = (MessageInline,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "conversation", "role", "tokens", "error_code", "total_ms", "created_at")
    list_filter = ("role", "error_code", "translator", "created_at")
    search_fields = ("id", "conversation__id", "content", "sql")
    list_select_related = ("conversation",)

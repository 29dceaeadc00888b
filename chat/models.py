"""Conversations with the chat assistant and their messages.

A conversation's id is chosen by the client (``conversationId``, at most 64
characters) and is global: the first ``chat`` naming it creates it for the
caller, and it stays theirs (anyone else naming it is refused).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


def new_message_id() -> str:
    return "m_" + uuid.uuid4().hex


class Conversation(models.Model):
    id = models.CharField(primary_key=True, max_length=64, help_text="conversationId, chosen by the client.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    application = models.ForeignKey(
        "accounts.Application", on_delete=models.CASCADE, related_name="conversations", db_index=False
    )
    title = models.CharField(max_length=200, blank=True, help_text="The first question, shortened.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "updated_at"], name="chat_conversation_owner")]

    def __str__(self) -> str:
        return self.title or self.id


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    id = models.CharField(primary_key=True, max_length=40, default=new_message_id, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    sql = models.TextField(blank=True, help_text="The statement that produced the answer, if any.")
    params = models.JSONField(null=True, blank=True)
    query_id = models.CharField(max_length=40, blank=True, help_text="queryId of the statement's run.")
    translator = models.CharField(max_length=20, blank=True)
    slots = models.JSONField(
        null=True, blank=True, help_text="What the question was understood as; fills slots of follow-ups."
    )
    tokens = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=32, blank=True)
    translate_ms = models.PositiveIntegerField(null=True, blank=True)
    query_ms = models.PositiveIntegerField(null=True, blank=True)
    total_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"], name="chat_message_conversation")]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"

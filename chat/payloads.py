"""Payload serializers of the chat events."""

from __future__ import annotations

from rest_framework import serializers

from realtime.handlers import ErrorPayload
from realtime.payloads import Payload

MAX_MESSAGE_LENGTH = 4000
CONVERSATION_ID = r"^[A-Za-z0-9._:@-]{1,64}$"


class ContextPayload(Payload):
    symbol = serializers.CharField(required=False, allow_null=True, max_length=32, help_text="e.g. BTC-USD.")
    chain = serializers.CharField(required=False, allow_null=True, max_length=32, help_text="ethereum or bitcoin.")
    address = serializers.CharField(required=False, allow_null=True, max_length=128, help_text="An address on chain.")


class ChatPayload(Payload):
    message = serializers.CharField(max_length=MAX_MESSAGE_LENGTH, help_text="The question, in plain language.")
    conversationId = serializers.RegexField(
        CONVERSATION_ID,
        required=False,
        help_text="Chosen by the client (1-64 of A-Z a-z 0-9 . _ : @ -); created on first use. Default: a new one.",
    )
    context = ContextPayload(required=False, allow_null=True, help_text="Fills what the question leaves out.")


class ConversationPayload(Payload):
    conversationId = serializers.CharField()


class ChatMessagePayload(Payload):
    conversationId = serializers.CharField()
    messageId = serializers.CharField()
    role = serializers.ChoiceField(["assistant"])
    delta = serializers.CharField(allow_blank=True, help_text="Text to append; empty on the final message.")
    content = serializers.CharField(required=False, help_text="The whole answer, on the final message only.")
    isFinal = serializers.BooleanField(help_text="True on exactly one message per answer, the last.")


class ChatResponsePayload(Payload):
    conversationId = serializers.CharField()
    messageId = serializers.CharField()
    tokens = serializers.IntegerField(
        help_text="Tokens the translator reports (a model server's usage); builtin: tokens of the streamed answer."
    )
    sql = serializers.CharField(required=False, help_text="The statement that produced the answer, if one ran.")
    params = serializers.DictField(required=False, help_text="Its parameters (bound, never interpolated).")
    queryId = serializers.CharField(required=False, help_text="queryId of its run (query_history).")


class ChatErrorPayload(ErrorPayload):
    conversationId = serializers.CharField(required=False)

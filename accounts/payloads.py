"""Payload serializers of the tenancy layer's events."""

from __future__ import annotations

from rest_framework import serializers

from realtime.payloads import Payload


class ApplicationBroadcastPayload(Payload):
    applicationId = serializers.CharField()
    message = serializers.CharField(max_length=2000)
    data = serializers.DictField(required=False, help_text="Optional structured content.")
    sentBy = serializers.CharField(help_text="userId of the sender.")
    timestamp = serializers.IntegerField(help_text="Epoch milliseconds.")

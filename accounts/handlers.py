"""Events of the tenancy layer: application broadcasts."""

from __future__ import annotations

from rest_framework import serializers

from realtime.payloads import Payload
from realtime.registry import registry


class ApplicationBroadcastPayload(Payload):
    applicationId = serializers.CharField()
    message = serializers.CharField(max_length=2000)
    data = serializers.DictField(required=False, help_text="Optional structured content.")
    sentBy = serializers.CharField(help_text="userId of the sender.")
    timestamp = serializers.IntegerField(help_text="Epoch milliseconds.")


registry.outbound(
    "application_broadcast",
    ApplicationBroadcastPayload,
    pushed=True,
    summary="A message from an application owner or admin to the application:<applicationId> room "
    "(sent with POST /api/applications/<applicationId>/broadcast).",
)

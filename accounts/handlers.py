"""Events of the tenancy layer: application broadcasts."""

from __future__ import annotations

from accounts.payloads import ApplicationBroadcastPayload
from realtime.registry import registry

registry.outbound(
    "application_broadcast",
    ApplicationBroadcastPayload,
    pushed=True,
    summary="A message from an application owner or admin to the application:<applicationId> room "
    "(sent with POST /api/applications/<applicationId>/broadcast).",
)

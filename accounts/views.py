"""REST endpoints of the tenancy layer."""

from __future__ import annotations

import json

from asgiref.sync import async_to_sync
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.apikeys import ANY_SCOPE
from accounts.models import ApiKey, ApiKeyScope
from accounts.serializers import Broadcast, BroadcastRequest, Failure, Me
from realtime import push
from realtime.errors import Unavailable
from realtime.layers import NoLocalReceivers
from realtime.protocol import now_ms

MAX_BROADCAST_DATA_BYTES = 16384


class MeView(APIView):
    """The caller, the application the request is bound to, and its memberships."""

    api_key_scope = ANY_SCOPE
    serializer_class = Me

    @extend_schema(responses={200: Me})
    def get(self, request: Request) -> Response:
        user = request.user
        bound = getattr(request.auth, "application_id", None) or user.default_application_id
        memberships = services.memberships_of(user.pk)
        return Response({"userId": user.username, "applicationId": bound, "applications": memberships})


class ApplicationBroadcastView(APIView):
    """Send ``application_broadcast`` to the room ``application:<id>``; owners
    and admins of the application (and staff) only."""

    api_key_scope = ApiKeyScope.BROADCAST.value
    serializer_class = BroadcastRequest

    @extend_schema(
        request=BroadcastRequest,
        responses={202: Broadcast, 400: Failure, 403: Failure, 503: Failure},
    )
    def post(self, request: Request, application_id: str) -> Response:
        if isinstance(request.auth, ApiKey) and request.auth.application_id != application_id:
            return Response(
                {"code": "UNAUTHORIZED", "message": "this API key is bound to another application"},
                status=status.HTTP_403_FORBIDDEN,
            )
        if not (request.user.is_staff or services.may_administer(request.user.pk, application_id)):
            return Response(
                {"code": "UNAUTHORIZED", "message": "only owners and admins of the application may broadcast"},
                status=status.HTTP_403_FORBIDDEN,
            )
        body = BroadcastRequest(data=request.data)
        if not body.is_valid():
            return Response(
                {"code": "VALIDATION_FAILED", "message": "invalid broadcast", "errors": body.errors},
                status=status.HTTP_400_BAD_REQUEST,
            )
        data = body.validated_data.get("data", {})
        if len(json.dumps(data)) > MAX_BROADCAST_DATA_BYTES:
            return Response(
                {"code": "VALIDATION_FAILED", "message": "data too large", "errors": {"data": ["At most 16 KiB."]}},
                status=status.HTTP_400_BAD_REQUEST,
            )
        payload = {
            "applicationId": application_id,
            "message": body.validated_data["message"],
            "data": data,
            "sentBy": request.user.username,
            "timestamp": now_ms(),
        }
        try:
            async_to_sync(push.broadcast)(f"application:{application_id}", "application_broadcast", payload)
        except Unavailable as exc:  # Redis does not answer: nothing was sent
            return Response(exc.payload(), status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=_retry_after(exc))
        except NoLocalReceivers:
            # Embedded stack, and this server process has not served a
            # connection yet: the room has no member to send to. The event
            # is in the room's history like any other.
            pass
        return Response(payload, status=status.HTTP_202_ACCEPTED)


def _retry_after(exc: Unavailable) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}

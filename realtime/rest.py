"""REST authentication with the same bearer tokens as the WebSocket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from realtime import auth, tenancy


@dataclass(frozen=True)
class RequestBinding:
    """``request.auth`` of a token-authenticated REST request."""

    identity: auth.Identity
    application_id: str


class BearerTokenAuthentication(authentication.BaseAuthentication):  # type: ignore[misc]  # DRF is untyped here
    def authenticate(self, request: Request) -> tuple[Any, RequestBinding] | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            identity = auth.verify_token(token.strip())
            user, application_id = tenancy.bind(
                identity.user_id, request.query_params.get("applicationId") or identity.application_id
            )
        except (auth.AuthenticationFailed, tenancy.TenancyError) as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return user, RequestBinding(identity, application_id)

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"

"""REST authentication with the same bearer tokens as the WebSocket."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts import services as accounts
from realtime import auth


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, auth.Identity] | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            identity = auth.verify_token(token.strip())
            user = accounts.get_or_create_user(identity.user_id)
            application = accounts.resolve_application(
                user, request.query_params.get("applicationId") or identity.application_id
            )
        except (auth.AuthenticationFailed, accounts.TenancyError) as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        user.bound_application_id = application.id
        return user, identity

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"

"""REST authentication with the same bearer tokens as the WebSocket, and
the permission class of endpoints open to staff and holders of one permission."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework import authentication, exceptions, permissions
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


class StaffOrPermission(permissions.BasePermission):  # type: ignore[misc]  # DRF is untyped here
    """Staff, or users holding ``permission`` (``"app_label.codename"``);
    subclasses set it and the ``message`` of a refusal."""

    permission = ""

    @classmethod
    def allows(cls, user: Any) -> bool:
        return bool(user and user.is_authenticated and (user.is_staff or user.has_perm(cls.permission)))

    def has_permission(self, request: Request, view: Any) -> bool:
        return self.allows(request.user)


def bound_application(request: Request) -> str | None:
    """The application a REST request acts in: the token's (or the API
    key's) binding, else the user's default application."""
    bound = getattr(request.auth, "application_id", None)
    if bound:
        return str(bound)
    default = getattr(request.user, "default_application_id", None)
    return str(default) if default else None

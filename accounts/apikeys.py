"""API keys for server-to-server calls: creating one (the key is returned
once; only its SHA-256 is kept), the DRF authentication that reads it
(``Authorization: Api-Key <key>`` or ``X-API-Key: <key>``), and the
permission that checks a view's scope.

A view declares what a key needs with ``api_key_scope`` (an
``ApiKeyScope`` value, or ``ANY_SCOPE``); a view without one refuses keys.
Bearer tokens and sessions are not affected by scopes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from accounts.models import ApiKey, ApiKeyScope, Membership

KEY_PREFIX = "lck_"
ANY_SCOPE = "*"
# last_used_at is written at most this often per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(prefix, key): the key is ``lck_<prefix>_<secret>``."""
    prefix = secrets.token_hex(6)
    return prefix, f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def create_key(
    *, name: str, user: Any, application: Any, scopes: list[str], expires_at: Any = None
) -> tuple[ApiKey, str]:
    """A new key and its plain text (show it once; it is not kept)."""
    unknown = set(scopes) - set(ApiKeyScope.values)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    prefix, key = new_key()
    api_key = ApiKey.objects.create(
        name=name,
        user=user,
        application=application,
        prefix=prefix,
        key_hash=hash_key(key),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
    )
    return api_key, key


def revoke(api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def find_key(key: str) -> ApiKey | None:
    """The live key (not revoked or expired, its user active and still a
    member of its application), or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    prefix, _, secret = key[len(KEY_PREFIX) :].partition("_")
    if not prefix or not secret:
        return None
    api_key = ApiKey.objects.select_related("user", "application").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_key(key)):
        return None
    now = timezone.now()
    if api_key.revoked_at is not None or (api_key.expires_at is not None and api_key.expires_at <= now):
        return None
    if not api_key.user.is_active or not api_key.application.is_active:
        return None
    if not Membership.objects.filter(user_id=api_key.user_id, application_id=api_key.application_id).exists():
        return None
    if api_key.last_used_at is None or api_key.last_used_at < now - LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``request.user`` is the key's user, ``request.auth`` the ApiKey (its
    ``application_id`` is the binding)."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        key = value.strip() if scheme.lower() == "api-key" else request.headers.get("X-API-Key", "").strip()
        if not key:
            return None
        api_key = find_key(key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked API key")
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return "Api-Key"


class ApiKeyScopes(permissions.BasePermission):
    """A key-authenticated request needs the view's ``api_key_scope``."""

    message = "this API key's scopes do not allow this endpoint"

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiKey):
            return True
        scope = getattr(view, "api_key_scope", None)
        return scope == ANY_SCOPE or (scope is not None and scope in request.auth.scopes)


# drf-spectacular registers the extension in its untyped __init_subclass__.
class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Documents ApiKeyAuthentication in the OpenAPI schema."""

    target_class = "accounts.apikeys.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "Or `Authorization: Api-Key <key>`. Each endpoint needs one of the key's scopes.",
        }

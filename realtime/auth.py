"""Token verification: Clerk session tokens (RS256) and development tokens (HS256).

Verification is synchronous (a JWKS fetch may block); callers on the event
loop run it in a worker thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from django.conf import settings

DEV_ALGORITHM = "HS256"
CLERK_ALGORITHM = "RS256"


class AuthenticationFailed(Exception):
    """The token is missing, malformed, expired or not trusted. The message
    is safe to send to the client and to log: it never contains the token."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    application_id: str | None
    claims: dict[str, Any]


_jwks_lock = threading.Lock()
_jwks_clients: dict[str, jwt.PyJWKClient] = {}


def _jwks_client(url: str) -> jwt.PyJWKClient:
    # PyJWKClient caches the key set for CLERK_JWKS_CACHE_SECONDS and
    # refetches it when a token names a kid it has not seen (key rotation),
    # at most once per CLERK_JWKS_REFRESH_COOLDOWN_SECONDS.
    with _jwks_lock:
        client = _jwks_clients.get(url)
        if client is None:
            client = jwt.PyJWKClient(
                url,
                cache_jwk_set=settings.CLERK_JWKS_CACHE_SECONDS > 0,
                lifespan=max(settings.CLERK_JWKS_CACHE_SECONDS, 1),
                timeout=5,
                cooldown_duration=settings.CLERK_JWKS_REFRESH_COOLDOWN_SECONDS,
            )
            _jwks_clients[url] = client
        return client


def token_from_scope(scope: dict[str, Any]) -> str | None:
    """The bearer token of a connection: ``?token=`` or ``Authorization: Bearer``."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("token"):
        return query["token"][0]
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


def verify_token(token: str) -> Identity:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationFailed("token is not a well-formed JWT") from None
    algorithm = header.get("alg")
    if algorithm == DEV_ALGORITHM and settings.LEDGERCORE_DEV_JWT_SECRET:
        claims = _decode(token, settings.LEDGERCORE_DEV_JWT_SECRET, DEV_ALGORITHM, issuer=None)
    elif algorithm == CLERK_ALGORITHM and (settings.CLERK_JWKS_URL or settings.CLERK_JWT_KEY):
        claims = _decode(token, _clerk_key(token), CLERK_ALGORITHM, issuer=settings.CLERK_ISSUER or None)
        _check_authorized_party(claims)
    else:
        raise AuthenticationFailed(f"tokens signed with {algorithm!r} are not accepted")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthenticationFailed("token has no subject")
    app = claims.get("app")
    return Identity(user_id=subject, application_id=app if isinstance(app, str) else None, claims=claims)


def _clerk_key(token: str) -> Any:
    if settings.CLERK_JWT_KEY:
        return settings.CLERK_JWT_KEY
    try:
        return _jwks_client(settings.CLERK_JWKS_URL).get_signing_key_from_jwt(token).key
    except jwt.PyJWKClientConnectionError:
        raise AuthenticationFailed("signing keys could not be fetched; try again") from None
    except jwt.PyJWTError:
        raise AuthenticationFailed("token is signed with an unknown key") from None


def _decode(token: str, key: Any, algorithm: str, issuer: str | None) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=issuer,
            leeway=settings.CLERK_LEEWAY_SECONDS,
            options={"require": ["exp", "sub"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthenticationFailed("token is not valid yet") from None
    except jwt.InvalidIssuerError:
        raise AuthenticationFailed("token issuer is not trusted") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationFailed(f"token lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError:
        raise AuthenticationFailed("token signature is invalid") from None


def _check_authorized_party(claims: dict[str, Any]) -> None:
    # As Clerk's own SDKs do: azp is checked when the token carries it and a
    # list of authorized parties is configured.
    azp = claims.get("azp")
    allowed = settings.CLERK_AUTHORIZED_PARTIES
    if allowed and azp is not None and azp not in allowed:
        raise AuthenticationFailed("token was issued for another origin")


def issue_dev_token(user_id: str, application_id: str | None = None, ttl_seconds: int = 86400) -> str:
    secret = settings.LEDGERCORE_DEV_JWT_SECRET
    if not secret:
        raise RuntimeError("LEDGERCORE_DEV_JWT_SECRET is empty: development tokens are disabled")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "nbf": now, "exp": now + ttl_seconds}
    if application_id:
        claims["app"] = application_id
    return jwt.encode(claims, secret, algorithm=DEV_ALGORITHM)

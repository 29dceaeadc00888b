"""Token verification: Clerk session tokens (RS256) and development tokens (HS256).

Clerk's signing keys come from its JWKS URL through ``KeySet``: a token
whose ``kid`` is cached is verified at once, never waiting on a fetch; only
a token with an unknown ``kid`` waits for the key set, up to
``CLERK_JWKS_TIMEOUT_SECONDS``. ``verify_token_async`` waits on the event
loop without holding a thread; ``verify_token`` (synchronous callers)
blocks its thread for at most that long.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from django.conf import settings

log = logging.getLogger(__name__)

DEV_ALGORITHM = "HS256"
CLERK_ALGORITHM = "RS256"
MAX_JWKS_BYTES = 1 << 20


class AuthenticationFailed(Exception):
    """The token is missing, malformed, expired or not trusted. The message
    is safe to send to the client and to log: it never contains the token."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    application_id: str | None
    claims: dict[str, Any]


class KeySet:
    """The signing keys of one JWKS URL, by ``kid``.

    - A cached ``kid`` is answered from memory and never waits. When the
      set is older than ``lifespan`` it is still used, and one fetch
      refreshes it in the background (a failed refresh keeps it).
    - An unknown ``kid`` waits for a fetch, at most ``timeout`` seconds.
      Concurrent lookups share the fetch in flight (single flight); a new
      fetch starts at most once per ``cooldown``, so tokens with made-up kids
      cannot make the server hammer the identity provider: during the
      cooldown an unknown ``kid`` is refused at once.

    A fetch runs in a thread of its own and gives up after ``timeout``
    (connecting and reading together), so nothing else waits on it.
    """

    def __init__(self, url: str, *, lifespan: float, cooldown: float, timeout: float) -> None:
        self.url = url
        self.lifespan = lifespan
        self.cooldown = cooldown
        self.timeout = timeout
        self.fetches = 0
        self._lock = threading.Lock()  # guards the state below; never held during I/O
        self._keys: dict[str, Any] = {}
        self._loaded_at: float | None = None
        self._started_at = float("-inf")
        self._inflight: concurrent.futures.Future[None] | None = None
        self._failure: str | None = None

    def cached(self, kid: str) -> Any | None:
        """The key of ``kid`` if it is cached (starting a background refresh
        of a stale set), else None. Never blocks on I/O."""
        with self._lock:
            key = self._keys.get(kid)
            if key is not None and self._stale():
                self._start(background=True)
            return key

    def get(self, kid: Any) -> Any:
        """The key of ``kid``, waiting (this thread) for a fetch if needed."""
        key, waiting = self._lookup(kid)
        if waiting is None:
            return key
        try:
            waiting.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise AuthenticationFailed("signing keys could not be fetched in time; try again") from None
        except Exception:  # noqa: BLE001 - any fetch failure is one the client may retry
            raise AuthenticationFailed("signing keys could not be fetched; try again") from None
        return self._after_fetch(kid)

    async def get_async(self, kid: Any) -> Any:
        """The key of ``kid``, waiting on the event loop (no thread held)
        for a fetch if needed."""
        key, waiting = self._lookup(kid)
        if waiting is None:
            return key
        try:
            await asyncio.wait_for(asyncio.wrap_future(waiting), self.timeout)
        except TimeoutError:
            raise AuthenticationFailed("signing keys could not be fetched in time; try again") from None
        except Exception:  # noqa: BLE001 - any fetch failure is one the client may retry
            raise AuthenticationFailed("signing keys could not be fetched; try again") from None
        return self._after_fetch(kid)

    def _lookup(self, kid: Any) -> tuple[Any, concurrent.futures.Future[None] | None]:
        """(key, None) for a cached kid; (None, fetch to wait for) otherwise;
        raises when no fetch may start."""
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed("token is signed with an unknown key")
        key = self.cached(kid)
        if key is not None:
            return key, None
        with self._lock:
            if kid in self._keys:  # fetched meanwhile
                return self._keys[kid], None
            waiting = self._start(background=False)
            failure = self._failure
        if waiting is None:
            if failure is not None:
                raise AuthenticationFailed("signing keys could not be fetched; try again")
            raise AuthenticationFailed("token is signed with an unknown key")
        return None, waiting

    def _after_fetch(self, kid: str) -> Any:
        with self._lock:
            key = self._keys.get(kid)
        if key is None:
            raise AuthenticationFailed("token is signed with an unknown key")
        return key

    def _stale(self) -> bool:
        return self._loaded_at is None or time.monotonic() - self._loaded_at >= self.lifespan

    def _start(self, *, background: bool) -> concurrent.futures.Future[None] | None:
        """The fetch in flight, or a new one if the cooldown allows it
        (the first fetch always may). Called with the lock held."""
        if self._inflight is not None:
            return self._inflight
        now = time.monotonic()
        if now - self._started_at < self.cooldown:
            return None
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        # Running: a waiter that gives up cannot cancel it for the others.
        future.set_running_or_notify_cancel()
        self._inflight = future
        self._started_at = now
        self.fetches += 1
        threading.Thread(target=self._fetch, args=(future,), name="jwks-fetch", daemon=True).start()
        log.info("fetching signing keys from %s (%s)", self.url, "refresh" if background else "unknown kid")
        return future

    def _fetch(self, future: concurrent.futures.Future[None]) -> None:
        try:
            keys = fetch_jwks(self.url, self.timeout)
        except Exception as exc:  # noqa: BLE001 - logged, kept for the status, handed to the waiters
            log.warning("could not fetch signing keys from %s: %s", self.url, exc)
            with self._lock:
                self._failure = str(exc) or type(exc).__name__
                self._inflight = None
            future.set_exception(exc)
            return
        with self._lock:
            self._keys = keys
            self._loaded_at = time.monotonic()
            self._failure = None
            self._inflight = None
        future.set_result(None)


def fetch_jwks(url: str, timeout: float) -> dict[str, Any]:
    """The signing keys (``use`` sig or unset, with a kid) of a JWKS
    document, by kid; gives up after ``timeout`` seconds in all."""
    if not url.startswith(("https://", "http://")):
        raise ValueError("the JWKS URL must be http(s)")
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
        url, headers={"Accept": "application/json", "User-Agent": "ledgercore-realtime"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the configured JWKS URL
        body = b""
        while chunk := response.read(65536):
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError(f"JWKS document larger than {MAX_JWKS_BYTES} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError(f"JWKS document not read within {timeout} s")
    keys = {
        key.key_id: key.key
        for key in jwt.PyJWKSet.from_dict(json.loads(body)).keys
        if key.key_id and key.public_key_use in ("sig", None)
    }
    if not keys:
        raise ValueError("the JWKS document has no signing key with a kid")
    return keys


_key_sets_lock = threading.Lock()
_key_sets: dict[str, KeySet] = {}


def key_set(url: str) -> KeySet:
    with _key_sets_lock:
        keys = _key_sets.get(url)
        if keys is None:
            keys = KeySet(
                url,
                lifespan=settings.CLERK_JWKS_CACHE_SECONDS,
                cooldown=settings.CLERK_JWKS_REFRESH_COOLDOWN_SECONDS,
                timeout=settings.CLERK_JWKS_TIMEOUT_SECONDS,
            )
            _key_sets[url] = keys
        return keys


def reset_key_sets() -> None:
    """Forget every cached key set (tests, or after changing the settings)."""
    with _key_sets_lock:
        _key_sets.clear()


def token_from_scope(scope: dict[str, Any]) -> str | None:
    """The bearer token of a connection: ``?token=`` or ``Authorization: Bearer``."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("token"):
        return str(query["token"][0])
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, credentials = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


def verify_token(token: str) -> Identity:
    """Verify a token, blocking this thread for a key fetch if its kid is
    not cached (at most CLERK_JWKS_TIMEOUT_SECONDS)."""
    header = _header(token)
    key = key_set(settings.CLERK_JWKS_URL).get(header.get("kid")) if _needs_jwks(header) else None
    return _verify(token, header, key)


async def verify_token_async(token: str) -> Identity:
    """Verify a token on the event loop: a key fetch is awaited without
    holding a thread, and nothing else blocks (the signature check is
    microseconds)."""
    header = _header(token)
    key = await key_set(settings.CLERK_JWKS_URL).get_async(header.get("kid")) if _needs_jwks(header) else None
    return _verify(token, header, key)


def _header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationFailed("token is not a well-formed JWT") from None


def _needs_jwks(header: dict[str, Any]) -> bool:
    return header.get("alg") == CLERK_ALGORITHM and not settings.CLERK_JWT_KEY and bool(settings.CLERK_JWKS_URL)


def _verify(token: str, header: dict[str, Any], jwks_key: Any) -> Identity:
    algorithm = header.get("alg")
    if algorithm == DEV_ALGORITHM and settings.LEDGERCORE_DEV_JWT_SECRET:
        claims = _decode(token, settings.LEDGERCORE_DEV_JWT_SECRET, DEV_ALGORITHM, issuer=None)
    elif algorithm == CLERK_ALGORITHM and (settings.CLERK_JWKS_URL or settings.CLERK_JWT_KEY):
        key = settings.CLERK_JWT_KEY or jwks_key
        claims = _decode(token, key, CLERK_ALGORITHM, issuer=settings.CLERK_ISSUER or None)
        _check_authorized_party(claims)
    else:
        raise AuthenticationFailed(f"tokens signed with {algorithm!r} are not accepted")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthenticationFailed("token has no subject")
    app = claims.get("app")
    return Identity(user_id=subject, application_id=app if isinstance(app, str) else None, claims=claims)


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


def origin_allowed(scope: dict[str, Any]) -> bool:
    """A WebSocket handshake's ``Origin`` is one of
    ``LEDGERCORE_ALLOWED_ORIGINS``, or absent (not a browser)."""
    for name, value in scope.get("headers", []):
        if name == b"origin":
            return value.decode("latin-1") in settings.LEDGERCORE_ALLOWED_ORIGINS
    return True

"""Reading settings from the environment, failing loudly on bad values.

Every reader names the variable in its error so that a typo in a deployment
stops the process at startup with a message an operator can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import environ
from django.core.exceptions import ImproperlyConfigured

from realtime.config import parse_rate

_env = environ.Env()


def _read[T](name: str, reader: Callable[[], T]) -> T:
    try:
        return reader()
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise ImproperlyConfigured(f"{name}: invalid value ({exc})") from None


def text(name: str, default: str = "") -> str:
    return str(_read(name, lambda: _env.str(name, default=default)))


def flag(name: str, default: bool) -> bool:
    raw = _env.str(name, default="").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}: expected true/false, got {raw!r}")


def integer(name: str, default: int, minimum: int | None = None) -> int:
    value = int(_read(name, lambda: _env.int(name, default=default)))
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value}")
    return value


def number(name: str, default: float, minimum: float = 0.0) -> float:
    value = float(_read(name, lambda: _env.float(name, default=default)))
    if value < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value}")
    return value


def items(name: str, default: list[str]) -> list[str]:
    values = _read(name, lambda: _env.list(name, default=default))
    return [v.strip() for v in values if v.strip()]


def database(name: str, default: str) -> dict[str, Any]:
    raw = _env.str(name, default=default)
    scheme = urlparse(raw).scheme
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(f"{name}: unsupported database URL scheme {scheme!r} (use sqlite:// or postgres://)")
    return _read(name, lambda: environ.Env.db_url_config(raw))


def redis_url(name: str) -> str:
    raw = str(_env.str(name, default="")).strip()
    if raw and urlparse(raw).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"{name}: expected redis://, rediss:// or unix:// URL, got {raw!r}")
    return raw


def host_ports(name: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (IPv6 as ``[::1]:26379``) -> [(host, port)]."""
    result = []
    for part in filter(None, (p.strip() for p in _env.str(name, default="").split(","))):
        host, sep, port = part.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"{name}: expected host:port pairs separated by commas, got {part!r}")
        result.append((host, int(port)))
    return result


def prices(name: str, default: dict[str, int]) -> dict[str, int]:
    raw = _env.str(name, default="").strip()
    result = dict(default)
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip().isdigit():
            raise ImproperlyConfigured(f"{name}: expected action=credits pairs, got {part!r}")
        result[key.strip()] = int(value)
    return result


def gc_thresholds(name: str, default: tuple[int, int, int]) -> tuple[int, ...]:
    raw = _env.str(name, default=",".join(map(str, default))).strip()
    if not raw:
        return ()
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected three integers like 100000,50,1000, got {raw!r}") from None
    if len(values) != 3 or min(values) < 1:
        raise ImproperlyConfigured(f"{name}: expected three positive integers, got {raw!r}")
    return values


def rates(name: str, default: dict[str, str]) -> dict[str, str]:
    raw = _env.str(name, default="").strip()
    result = dict(default)
    if raw:
        for part in raw.split(","):
            if "=" not in part:
                raise ImproperlyConfigured(f"{name}: expected class=N/period pairs, got {part!r}")
            key, value = (p.strip() for p in part.split("=", 1))
            result[key] = value
    for key, value in result.items():
        try:
            parse_rate(value)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: class {key!r}: {exc}") from None
    return result

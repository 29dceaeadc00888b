"""Checks of secrets given to the settings."""

from __future__ import annotations

# Values that appear in documentation, examples or older defaults.
KNOWN = frozenset(
    {
        "insecure-embedded-default-change-me-in-production-4d1f8a",
        "insecure-debug-only-key",
        "change-me",
        "changeme",
        "secret",
    }
)


def strong_secret(value: str, min_length: int) -> bool:
    """Long enough, not a known value, not Django's ``django-insecure-``
    prefix, and not one repeated character."""
    return (
        len(value) >= min_length
        and value not in KNOWN
        and not value.startswith("django-insecure")
        and len(set(value)) >= 5
    )

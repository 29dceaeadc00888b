"""The tenancy port: the user behind an authenticated subject, and the
application (tenant) a connection or request acts in.

realtime knows users only as Django's auth users and applications only by
id; the rules (who may act in which application) belong to the app that
owns users and applications, which plugs them in at its
``AppConfig.ready()`` with ``install``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from realtime.batching import Batched


class TenancyError(Exception):
    """The user may not act in the requested application."""


class Tenancy(Protocol):
    def bind(self, user_id: str, requested_application: str | None) -> tuple[Any, str]:
        """The user (created on first sight) of an authenticated subject and
        the id of the application it acts in: the one requested if it is a
        member, else its default. Raises TenancyError if it may not."""
        ...

    def bind_many(self, requests: Sequence[tuple[str, str | None]]) -> Sequence[tuple[Any, str] | Exception]:
        """``bind`` for many (subject, requested application) pairs at once,
        in order: each its result or its exception (TenancyError)."""
        ...

    def is_member(self, user_pk: int, application_id: str) -> bool:
        """Whether the user belongs to the (active) application."""
        ...

    def are_members(self, pairs: Sequence[tuple[int, str]]) -> Sequence[bool]:
        """``is_member`` for many (user, application) pairs at once, in order."""
        ...


class _NotInstalled:
    def bind(self, user_id: str, requested_application: str | None) -> tuple[Any, str]:
        raise RuntimeError("no tenancy installed: the app owning users calls realtime.tenancy.install() at ready()")

    def bind_many(self, requests: Sequence[tuple[str, str | None]]) -> Sequence[tuple[Any, str] | Exception]:
        raise RuntimeError("no tenancy installed: the app owning users calls realtime.tenancy.install() at ready()")

    def is_member(self, user_pk: int, application_id: str) -> bool:
        raise RuntimeError("no tenancy installed: the app owning users calls realtime.tenancy.install() at ready()")

    def are_members(self, pairs: Sequence[tuple[int, str]]) -> Sequence[bool]:
        raise RuntimeError("no tenancy installed: the app owning users calls realtime.tenancy.install() at ready()")


_tenancy: Tenancy = _NotInstalled()


def install(tenancy: Tenancy) -> None:
    global _tenancy
    _tenancy = tenancy


def bind(user_id: str, requested_application: str | None) -> tuple[Any, str]:
    return _tenancy.bind(user_id, requested_application)


def bind_many(requests: Sequence[tuple[str, str | None]]) -> Sequence[tuple[Any, str] | Exception]:
    return _tenancy.bind_many(requests)


# The binds of connections that ask together, in one hop to the ORM thread.
_binds: Batched[tuple[str, str | None], tuple[Any, str]] = Batched(bind_many)


async def bind_async(user_id: str, requested_application: str | None) -> tuple[Any, str]:
    """``bind`` on the ORM thread, sharing its hop and its statement with
    the binds asked in the same turn of the event loop (a connection storm)."""
    return await _binds((user_id, requested_application))


def is_member(user_pk: int, application_id: str) -> bool:
    return _tenancy.is_member(user_pk, application_id)


def _are_members(pairs: Sequence[tuple[int, str]]) -> Sequence[bool]:
    return _tenancy.are_members(pairs)


# The checks of connections that ask together, in one hop to the ORM thread.
_member_checks: Batched[tuple[int, str], bool] = Batched(_are_members)


async def is_member_async(user_pk: int, application_id: str) -> bool:
    """``is_member`` on the ORM thread, sharing its hop and its statement
    with the checks asked in the same turn of the event loop (a storm of
    subscriptions after a reconnect)."""
    return await _member_checks((user_pk, application_id))

"""Binding a connection: the user of an authenticated subject and the
application its connection acts in, in one indexed query.

Every connection is bound on the process's one ORM thread, which every
other socket's database work waits for. Through the ORM the user, its
default application and the membership take two or three queries of
~0.4 ms each to build (Django's SQL compiler); the same rows read through
one parameterised statement take ~20 µs. The rules are those of
``accounts.services.bind``, which still handles a subject seen for the
first time (the user and its personal application created).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from django.db import connection

from accounts import services
from accounts.models import Application, Membership, User
from accounts.queries import column

# What the project reads of a bound user on every request (``is_staff``:
# every HTTP permission check), so that none costs a query of its own; in
# the model's field order, as ``Model.from_db`` takes them.
FIELDS = ["id", "username", "is_staff", "is_active", "default_application_id"]
DEFAULT_APPLICATION = FIELDS.index("default_application_id")
MEMBER = len(FIELDS)


@functools.cache
def _statement(vendor: str, requests: int) -> str:
    """The statement for ``requests`` (subject, application) pairs, in
    ``vendor``'s quoting: a row per pair whose subject is a user."""
    q = connection.ops.quote_name
    names = {
        "user": q(User._meta.db_table),
        "membership": q(Membership._meta.db_table),
        "application": q(Application._meta.db_table),
        "columns": ", ".join(f"u.{column(User, name.removesuffix('_id'))}" for name in FIELDS),
        "user_pk": column(User, "id"),
        "username": column(User, "username"),
        "m_user": column(Membership, "user"),
        "m_app": column(Membership, "application"),
        "app_pk": column(Application, "id"),
        "app_active": column(Application, "is_active"),
        "values": ", ".join(["(%s, %s)"] * requests),
    }
    return STATEMENT.format(**names)


# Names come from the models; the subjects and application ids are parameters.
STATEMENT = (
    "WITH r(subject, app) AS (VALUES {values})"
    " SELECT r.subject, r.app, {columns}, EXISTS (SELECT 1 FROM {membership} m"
    " JOIN {application} a ON a.{app_pk} = m.{m_app}"
    " WHERE m.{m_user} = u.{user_pk} AND m.{m_app} = r.app AND a.{app_active})"
    " FROM r JOIN {user} u ON u.{username} = r.subject"
)

Request = tuple[str, str | None]


def bind_connection(user_id: str, requested_application: str | None) -> tuple[User, str]:
    """(user, application id) as ``services.bind`` decides them; TenancyError
    if the user is deactivated or not a member of the requested (active)
    application. The user is loaded with FIELDS only (the others load on
    first access, as with ``.only()``)."""
    result = bind_connections([(user_id, requested_application)])[0]
    if isinstance(result, Exception):
        raise result
    return result


def bind_connections(requests: Sequence[Request]) -> list[tuple[User, str] | Exception]:
    """``bind_connection`` for each (subject, requested application), in
    order, with one statement for all of them: each its result or its
    TenancyError (or the error of binding a subject seen for the first
    time). The same user bound twice is two instances."""
    results: list[tuple[User, str] | Exception | None] = [None] * len(requests)
    asked: dict[Request, list[int]] = {}
    for index, (user_id, app) in enumerate(requests):
        if not services.USER_ID_RE.match(user_id):
            results[index] = services.TenancyError("user id has characters outside [A-Za-z0-9@.+_-]")
        elif app and "\x00" in app:
            # No application id holds one, and PostgreSQL refuses it in a parameter.
            results[index] = services.TenancyError("not a member of that application")
        else:
            asked.setdefault((user_id, app or None), []).append(index)
    rows = _rows(list(asked)) if asked else {}
    for (user_id, app), indexes in asked.items():
        for index in indexes:
            results[index] = _result(user_id, app, rows.get((user_id, app)))
    return [result if result is not None else RuntimeError("not bound") for result in results]


def _rows(pairs: list[Request]) -> dict[Request, tuple[Any, ...]]:
    params: list[str | None] = []
    for user_id, app in pairs:
        params += [user_id, app]
    with connection.cursor() as cursor:
        cursor.execute(_statement(connection.vendor, len(pairs)), params)
        return {(row[0], row[1]): row[2:] for row in cursor.fetchall()}


def _result(user_id: str, app: str | None, row: tuple[Any, ...] | None) -> tuple[User, str] | Exception:
    try:
        if row is None or row[DEFAULT_APPLICATION] is None:
            # First sight of this subject (or no default application yet).
            user, application = services.bind(user_id, app)
            return user, application.id
        values = [bool(value) if name.startswith("is_") else value for name, value in zip(FIELDS, row, strict=False)]
        user = User.from_db(connection.alias, FIELDS, values)
        if not user.is_active:
            return services.TenancyError("user is deactivated")
        if app:
            if not row[MEMBER]:
                return services.TenancyError("not a member of that application")
            return user, app
        return user, row[DEFAULT_APPLICATION]
    except services.TenancyError as exc:
        return exc


class AccountsTenancy:
    """These rules behind realtime's tenancy port (installed at ready())."""

    def bind(self, user_id: str, requested_application: str | None) -> tuple[User, str]:
        return bind_connection(user_id, requested_application)

    def bind_many(self, requests: Sequence[Request]) -> list[tuple[User, str] | Exception]:
        return bind_connections(requests)

    def is_member(self, user_pk: int, application_id: str) -> bool:
        return services.is_member(user_pk, application_id)

    def are_members(self, pairs: Sequence[tuple[int, str]]) -> list[bool]:
        return services.are_members(pairs)

"""Membership checks made on hot paths, in one parameterised statement each.

The owner check runs on every broadcast request, the member check on every
subscription to an application's room (on the process's one ORM thread,
which every socket's database work waits for). Through the ORM each takes
~0.45 ms to build (Django's SQL compiler, with the join on the
application); the statement itself runs in ~50 µs on SQLite. Table and
column names come from the models; ids are parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from django.db import connection
from django.db.models import Field, Model

from accounts.models import Application, Membership

ADMINISTERING = (Membership.Role.OWNER.value, Membership.Role.ADMIN.value)


def column(model: type[Model], name: str) -> str:
    """The quoted column of ``model.name``."""
    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column, f"{model.__name__}.{name} is not a column"
    return connection.ops.quote_name(field.column)


@functools.cache
def _membership_statement(vendor: str, roles: int) -> str:
    """The statement in ``vendor``'s quoting; with ``roles`` more parameters
    for the roles admitted (none: any role)."""
    q = connection.ops.quote_name
    membership, application = q(Membership._meta.db_table), q(Application._meta.db_table)
    m_user, m_app, m_role = (column(Membership, name) for name in ("user", "application", "role"))
    app_pk, app_active = column(Application, "id"), column(Application, "is_active")
    sql = (
        f"SELECT 1 FROM {membership} m JOIN {application} a ON a.{app_pk} = m.{m_app}"  # noqa: S608 - names from the models
        f" WHERE m.{m_user} = %s AND m.{m_app} = %s AND a.{app_active}"
    )
    if roles:
        sql += f" AND m.{m_role} IN ({', '.join(['%s'] * roles)})"
    return sql


def _exists(user_pk: int, application_id: str, roles: tuple[str, ...] = ()) -> bool:
    if "\x00" in application_id:
        # No application id holds one, and PostgreSQL refuses it in a parameter.
        return False
    with connection.cursor() as cursor:
        cursor.execute(_membership_statement(connection.vendor, len(roles)), [user_pk, application_id, *roles])
        return cursor.fetchone() is not None


def is_member(user_pk: int, application_id: str) -> bool:
    """Whether the user is a member (any role) of the application, which is active."""
    return _exists(user_pk, application_id)


def are_members(pairs: Sequence[tuple[int, str]]) -> list[bool]:
    """``is_member`` for each (user, application), in order, in one
    statement (a storm of subscriptions checked in one hop)."""
    asked = list(dict.fromkeys(pair for pair in pairs if "\x00" not in pair[1]))
    if not asked:
        return [False] * len(pairs)
    params: list[int | str] = []
    for user_pk, application_id in asked:
        params += [user_pk, application_id]
    with connection.cursor() as cursor:
        cursor.execute(_members_statement(connection.vendor, len(asked)), params)
        found = {(row[0], row[1]) for row in cursor.fetchall()}
    return [pair in found for pair in pairs]


@functools.cache
def _members_statement(vendor: str, pairs: int) -> str:
    q = connection.ops.quote_name
    membership, application = q(Membership._meta.db_table), q(Application._meta.db_table)
    m_user, m_app = column(Membership, "user"), column(Membership, "application")
    app_pk, app_active = column(Application, "id"), column(Application, "is_active")
    values = ", ".join(["(%s, %s)"] * pairs)
    return (
        f"WITH r(user_pk, app) AS (VALUES {values})"  # noqa: S608 - names from the models
        f" SELECT r.user_pk, r.app FROM r JOIN {membership} m ON m.{m_user} = r.user_pk AND m.{m_app} = r.app"
        f" JOIN {application} a ON a.{app_pk} = m.{m_app} WHERE a.{app_active}"
    )


def may_administer(user_pk: int, application_id: str) -> bool:
    """Whether the user owns or administers the application, which is active."""
    return _exists(user_pk, application_id, ADMINISTERING)

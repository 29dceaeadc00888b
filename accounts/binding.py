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


def _statement() -> str:
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
    }
    return STATEMENT.format(**names)


# Names come from the models; the subject and application id are parameters.
STATEMENT = (
    "SELECT {columns}, EXISTS (SELECT 1 FROM {membership} m JOIN {application} a ON a.{app_pk} = m.{m_app}"
    " WHERE m.{m_user} = u.{user_pk} AND m.{m_app} = %s AND a.{app_active})"
    " FROM {user} u WHERE u.{username} = %s"
)


def bind_connection(user_id: str, requested_application: str | None) -> tuple[User, str]:
    """(user, application id) as ``services.bind`` decides them; TenancyError
    if the user is deactivated or not a member of the requested (active)
    application. The user is loaded with FIELDS only (the others load on
    first access, as with ``.only()``)."""
    if not services.USER_ID_RE.match(user_id):
        raise services.TenancyError("user id has characters outside [A-Za-z0-9@.+_-]")
    if requested_application and "\x00" in requested_application:
        # No application id holds one, and PostgreSQL refuses it in a parameter.
        raise services.TenancyError("not a member of that application")
    with connection.cursor() as cursor:
        cursor.execute(_statement(), [requested_application, user_id])
        row = cursor.fetchone()
    if row is None or row[DEFAULT_APPLICATION] is None:
        # First sight of this subject (or no default application yet).
        user, application = services.bind(user_id, requested_application)
        return user, application.id
    values = [bool(value) if name.startswith("is_") else value for name, value in zip(FIELDS, row, strict=False)]
    user = User.from_db(connection.alias, FIELDS, values)
    if not user.is_active:
        raise services.TenancyError("user is deactivated")
    if requested_application:
        if not row[MEMBER]:
            raise services.TenancyError("not a member of that application")
        return user, requested_application
    return user, row[DEFAULT_APPLICATION]


class AccountsTenancy:
    """These rules behind realtime's tenancy port (installed at ready())."""

    def bind(self, user_id: str, requested_application: str | None) -> tuple[User, str]:
        return bind_connection(user_id, requested_application)

    def is_member(self, user_pk: int, application_id: str) -> bool:
        return services.is_member(user_pk, application_id)

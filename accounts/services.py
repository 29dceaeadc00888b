"""Users and applications: the tenancy rules every other app relies on."""

from __future__ import annotations

import re
from collections.abc import Sequence

from django.db import IntegrityError, transaction

from accounts import queries
from accounts.models import Application, Membership, User
from realtime import tenancy

# Clerk user ids and Django usernames share this alphabet.
USER_ID_RE = re.compile(r"^[A-Za-z0-9@.+_-]{1,150}$")


class TenancyError(tenancy.TenancyError):
    """The user may not act in the requested application."""


def get_or_create_user(user_id: str) -> User:
    """The user for an identity-provider subject, created on first sight with a
    personal application as its default."""
    if not USER_ID_RE.match(user_id):
        raise TenancyError("user id has characters outside [A-Za-z0-9@.+_-]")
    # With its default application: binding a connection then needs no
    # second query.
    user = User.objects.filter(username=user_id).select_related("default_application").first()
    if user is not None:
        if user.default_application_id is None:
            ensure_default_application(user)
        return user
    try:
        with transaction.atomic():
            user = User.objects.create(username=user_id)
            user.set_unusable_password()
            user.save(update_fields=["password"])
            ensure_default_application(user)
            return user
    except IntegrityError:
        # Two first connections of one user raced; the other one created it.
        return User.objects.get(username=user_id)


def ensure_default_application(user: User) -> Application:
    # Outside a transaction when there is one: on SQLite a transaction
    # (BEGIN IMMEDIATE) takes the write lock, which every connect would
    # then wait for.
    if user.default_application_id:
        return user.default_application  # type: ignore[return-value]
    return _choose_default_application(user)


@transaction.atomic
def _choose_default_application(user: User) -> Application:
    membership = user.memberships.select_related("application").order_by("created_at").first()
    if membership is not None:
        application = membership.application
    else:
        application = Application.objects.create(name=f"{user.username} (personal)")
        Membership.objects.create(application=application, user=user, role=Membership.Role.OWNER)
    user.default_application = application
    user.save(update_fields=["default_application"])
    return application


def may_administer(user_pk: int, application_id: str) -> bool:
    return queries.may_administer(user_pk, application_id)


def memberships_of(user_pk: int) -> list[dict[str, str]]:
    return [
        {"applicationId": m.application_id, "name": m.application.name, "role": m.role}
        for m in Membership.objects.filter(user_id=user_pk, application__is_active=True)
        .select_related("application")
        .order_by("created_at")
    ]


def is_member(user_pk: int, application_id: str) -> bool:
    return queries.is_member(user_pk, application_id)


def are_members(pairs: Sequence[tuple[int, str]]) -> list[bool]:
    return queries.are_members(pairs)


def resolve_application(user: User, requested: str | None) -> Application:
    """The application a connection or request is bound to: the one requested
    (query parameter or token claim) if the user is a member, else the
    user's default."""
    if requested:
        application = Application.objects.filter(id=requested, is_active=True, memberships__user=user).first()
        if application is None:
            raise TenancyError("not a member of that application")
        return application
    return ensure_default_application(user)


def bind(user_id: str, requested_application: str | None) -> tuple[User, Application]:
    """The user of an authenticated subject and the application its
    connection or request acts in; TenancyError if it may not."""
    user = get_or_create_user(user_id)
    if not user.is_active:
        raise TenancyError("user is deactivated")
    return user, resolve_application(user, requested_application)


@transaction.atomic
def add_member(application: Application, user: User, role: str = Membership.Role.MEMBER) -> Membership:
    membership, _ = Membership.objects.get_or_create(application=application, user=user, defaults={"role": role})
    return membership

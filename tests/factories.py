"""factory_boy factories for the suite's users, applications (tenants),
memberships and credit grants.

Users are made the way the server makes them on a first connection
(``get_or_create_user``: a personal application as the default, owned by the
user); admins the way an operator makes them (``create_superuser``, no
application). Grants go through ``grant_credits``, so the ledger's rules and
events apply to them as to any grant. Names are unique per call: the scaled
stack's Redis outlives a test's database.
"""

from __future__ import annotations

from typing import Any

import factory
from factory.django import DjangoModelFactory

from accounts import services as accounts
from accounts.models import Application, Membership, User
from credits import services as credits
from credits.models import LedgerEntry
from tests.wsclient import unique


class UserFactory(DjangoModelFactory[User]):
    """A user as the server creates one on first sight, with a personal
    default application. ``UserFactory.create(staff=True)`` is a staff member."""

    class Meta:
        model = User

    username = factory.LazyFunction(lambda: unique("user"))

    class Params:
        staff = factory.Trait(is_staff=True)

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, username: str, **fields: Any) -> User:
        user = accounts.get_or_create_user(username)
        if fields:
            for name, value in fields.items():
                setattr(user, name, value)
            user.save(update_fields=list(fields))
        return user


class AdminFactory(DjangoModelFactory[User]):
    """A superuser for the Django admin, made as ``createsuperuser`` makes one."""

    class Meta:
        model = User

    username = factory.LazyFunction(lambda: unique("admin"))
    email = "admin@example.test"
    password = "a-long-test-password"

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, username: str, email: str, password: str) -> User:
        return model_class.objects.create_superuser(username, email, password)


class ApplicationFactory(DjangoModelFactory[Application]):
    """An application (tenant) without members; see ``team``."""

    class Meta:
        model = Application

    name = factory.LazyFunction(lambda: unique("team"))


class MembershipFactory(DjangoModelFactory[Membership]):
    """``user`` in ``application`` with ``role``, through ``add_member``."""

    class Meta:
        model = Membership

    application = factory.SubFactory(ApplicationFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.MEMBER

    @classmethod
    def _create(
        cls, model_class: type[Membership], *args: Any, application: Application, user: User, role: str
    ) -> Membership:
        return accounts.add_member(application, user, role)


class GrantFactory(factory.Factory[LedgerEntry]):
    """A credit grant to ``user`` in ``application_id`` (the user's default
    application unless given), through ``grant_credits`` by the system."""

    class Meta:
        model = LedgerEntry

    user = factory.SubFactory(UserFactory)
    application_id = factory.LazyAttribute(lambda grant: grant.user.default_application_id)
    amount = 100
    reason = "test grant"

    @classmethod
    def _create(
        cls, model_class: type[LedgerEntry], *args: Any, user: User, application_id: str, amount: int, **options: Any
    ) -> LedgerEntry:
        return credits.grant_credits(user.pk, application_id, amount, actor=credits.Actor.system(), **options)


def team(*members: User | str, owner: User | str | None = None, name: str | None = None) -> Application:
    """A new application with ``owner`` (if any) as owner and ``members`` as
    plain members; users may be given by user id."""
    application = ApplicationFactory.create(**({"name": name} if name else {}))
    if owner is not None:
        MembershipFactory.create(application=application, user=user_of(owner), role=Membership.Role.OWNER)
    for member in members:
        MembershipFactory.create(application=application, user=user_of(member))
    return application


def user_of(user: User | str) -> User:
    return user if isinstance(user, User) else UserFactory.create(username=user)


def funded(user: User | str, *amounts: int, reason: str | None = None) -> tuple[User, str]:
    """The user (made if given by id) with one system grant per amount in
    its default application; ``reason`` defaults to "grant <index>"."""
    user = user_of(user)
    application_id = user.default_application_id
    assert application_id is not None
    for index, amount in enumerate(amounts):
        GrantFactory.create(user=user, application_id=application_id, amount=amount, reason=reason or f"grant {index}")
    return user, application_id

"""Tenancy services, called directly."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import services
from accounts.models import Application, Membership

pytestmark = pytest.mark.django_db


def test_new_user_gets_a_personal_default_application_as_owner():
    user = services.get_or_create_user("user_abc")
    assert user.default_application is not None
    membership = Membership.objects.get(user=user)
    assert membership.application == user.default_application
    assert membership.role == Membership.Role.OWNER
    assert services.get_or_create_user("user_abc").pk == user.pk
    assert Application.objects.filter(memberships__user=user).count() == 1


def test_user_ids_outside_the_alphabet_are_refused():
    with pytest.raises(services.TenancyError):
        services.get_or_create_user("bad id with spaces")


def test_resolve_application_honours_membership(alice, outsider):
    team = Application.objects.create(name="team")
    services.add_member(team, alice)
    assert services.resolve_application(alice, team.id) == team
    assert services.resolve_application(alice, None) == alice.default_application
    with pytest.raises(services.TenancyError):
        services.resolve_application(outsider, team.id)
    team.is_active = False
    team.save()
    with pytest.raises(services.TenancyError):
        services.resolve_application(alice, team.id)
    assert not services.is_member(alice.pk, team.id)


@pytest.mark.parametrize(
    ("role", "member", "administers"),
    [
        (Membership.Role.OWNER, True, True),
        (Membership.Role.ADMIN, True, True),
        (Membership.Role.MEMBER, True, False),
        (None, False, False),
    ],
)
def test_membership_checks_follow_the_role_and_the_application_being_active(alice, role, member, administers):
    team = Application.objects.create(name="team")
    other = Application.objects.create(name="other")
    if role is not None:
        services.add_member(team, alice, role)
    # A membership elsewhere, with every right, says nothing about this application.
    services.add_member(other, alice, Membership.Role.OWNER)
    assert services.is_member(alice.pk, team.id) is member
    assert services.may_administer(alice.pk, team.id) is administers
    team.is_active = False
    team.save()
    assert services.is_member(alice.pk, team.id) is False
    assert services.may_administer(alice.pk, team.id) is False
    assert services.is_member(alice.pk, other.id) is True


def test_membership_checks_refuse_ids_that_cannot_exist(alice):
    # PostgreSQL refuses NUL in a parameter: the answer is no, not an error.
    assert services.is_member(alice.pk, alice.default_application_id + "\x00") is False
    assert services.may_administer(alice.pk, alice.default_application_id + "\x00") is False
    assert services.may_administer(alice.pk, "app_that_does_not_exist") is False
    assert services.may_administer(alice.pk, alice.default_application_id) is True


def test_many_membership_checks_answer_as_each_alone_in_one_statement(alice, colleague, outsider):
    closed = Application.objects.create(name="closed")
    services.add_member(closed, alice)
    closed.is_active = False
    closed.save()
    app = alice.default_application_id
    pairs = [
        (alice.pk, app),
        (outsider.pk, app),
        (colleague.pk, app),
        (alice.pk, closed.id),
        (alice.pk, app + "\x00"),
        (alice.pk, "app_that_does_not_exist"),
        (alice.pk, app),
    ]
    with CaptureQueriesContext(connection) as queries:
        answers = services.are_members(pairs)
    assert len(queries) == 1
    assert answers == [services.is_member(user_pk, application_id) for user_pk, application_id in pairs]
    assert answers == [True, False, True, False, False, False, True]
    assert services.are_members([(alice.pk, app + "\x00")]) == [False]

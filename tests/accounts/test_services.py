"""Tenancy services, called directly."""

from __future__ import annotations

import pytest

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

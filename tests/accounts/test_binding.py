"""Binding a connection (accounts.binding, the tenancy port's bind): the
rules of accounts.services.bind, read in one statement, called directly."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import services
from accounts.binding import bind_connection, bind_connections
from accounts.models import Application, Membership, User
from realtime import tenancy

pytestmark = pytest.mark.django_db


def test_a_known_user_is_bound_to_its_default_application_in_one_query(alice):
    with CaptureQueriesContext(connection) as queries:
        user, application_id = bind_connection(alice.username, None)
    assert len(queries) == 1
    assert (user.pk, user.username, application_id) == (alice.pk, alice.username, alice.default_application_id)
    # What every request reads costs no query; the other fields load on
    # first access, as with .only().
    with CaptureQueriesContext(connection) as queries:
        assert (user.is_active, user.is_staff) == (True, alice.is_staff)
    assert len(queries) == 0
    assert user.email == alice.email


def test_staff_is_read_with_the_user(alice):
    alice.is_staff = True
    alice.save()
    with CaptureQueriesContext(connection) as queries:
        user, _ = bind_connection(alice.username, None)
        assert user.is_staff is True
    assert len(queries) == 1


def test_the_port_binds_through_the_statement(alice):
    user, application_id = tenancy.bind(alice.username, None)
    assert (user.pk, application_id) == (alice.pk, alice.default_application_id)


def test_a_requested_application_binds_only_a_member_of_it_while_it_is_active(alice, outsider):
    team = Application.objects.create(name="team")
    services.add_member(team, alice)
    assert bind_connection(alice.username, team.id)[1] == team.id
    with pytest.raises(services.TenancyError, match="not a member"):
        bind_connection(outsider.username, team.id)
    team.is_active = False
    team.save()
    with pytest.raises(services.TenancyError, match="not a member"):
        bind_connection(alice.username, team.id)


def test_a_membership_removed_is_refused_at_the_next_bind(alice, colleague):
    team = alice.default_application
    assert bind_connection(colleague.username, team.id)[1] == team.id
    Membership.objects.filter(user=colleague, application=team).delete()
    with pytest.raises(services.TenancyError, match="not a member"):
        bind_connection(colleague.username, team.id)


def test_a_deactivated_user_is_refused_at_the_next_bind(alice):
    bind_connection(alice.username, None)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    with pytest.raises(services.TenancyError, match="deactivated"):
        bind_connection(alice.username, None)
    with pytest.raises(services.TenancyError, match="deactivated"):
        bind_connection(alice.username, alice.default_application_id)


def test_a_subject_seen_for_the_first_time_is_created_with_a_personal_application():
    user, application_id = bind_connection("first_sight", None)
    record = User.objects.get(username="first_sight")
    assert record.pk == user.pk and record.default_application_id == application_id
    assert Membership.objects.get(user=record).role == Membership.Role.OWNER


def test_a_user_without_a_default_application_gets_the_oldest_membership(alice, colleague):
    User.objects.filter(pk=colleague.pk).update(default_application=None)
    personal = Membership.objects.filter(user=colleague).order_by("created_at").first()
    assert personal is not None
    assert bind_connection(colleague.username, None)[1] == personal.application_id


def test_subjects_and_application_ids_reach_the_statement_as_values(alice):
    with pytest.raises(services.TenancyError, match="outside"):
        bind_connection("x' OR '1'='1", None)
    for requested in ("' OR 1=1 --", f"{alice.default_application_id}' OR '1'='1"):
        with pytest.raises(services.TenancyError, match="not a member"):
            bind_connection(alice.username, requested)


def test_an_application_id_with_a_null_character_is_refused_not_sent_to_the_database(alice):
    with pytest.raises(services.TenancyError, match="not a member"):
        bind_connection(alice.username, f"{alice.default_application_id}\x00")


def test_the_fields_read_are_in_the_models_order_as_from_db_takes_them():
    from accounts.binding import FIELDS

    assert [f.attname for f in User._meta.concrete_fields if f.attname in FIELDS] == FIELDS


def test_many_connections_are_bound_in_one_statement_each_as_it_would_be_alone(alice, outsider, colleague):
    team = Application.objects.create(name="team")
    services.add_member(team, alice)
    gone = User.objects.create(username="gone", is_active=False, default_application=alice.default_application)
    requests = [
        (alice.username, None),
        (alice.username, team.id),
        (outsider.username, team.id),
        (colleague.username, None),
        (alice.username, None),
        (gone.username, None),
        ("has space", None),
        (alice.username, "app\x00"),
    ]
    with CaptureQueriesContext(connection) as queries:
        results = bind_connections(requests)
    assert len(queries) == 1
    alone = []
    for subject, app in requests:
        try:
            alone.append(bind_connection(subject, app))
        except services.TenancyError as exc:
            alone.append(exc)
    assert len(results) == len(requests)
    for result, expected in zip(results, alone, strict=True):
        if isinstance(expected, Exception):
            assert isinstance(result, services.TenancyError) and str(result) == str(expected)
        else:
            assert not isinstance(result, Exception)
            assert (result[0].pk, result[0].username, result[1]) == (expected[0].pk, expected[0].username, expected[1])
    # The same user twice is two instances: one connection's user is not another's.
    assert results[0][0] is not results[4][0]  # type: ignore[index]


def test_subjects_seen_for_the_first_time_in_a_batch_are_created_once_each(alice):
    results = bind_connections([("new_one", None), (alice.username, None), ("new_one", None), ("new_two", None)])
    assert not any(isinstance(result, Exception) for result in results)
    assert User.objects.filter(username__in=["new_one", "new_two"]).count() == 2
    assert results[0][0].pk == results[2][0].pk  # type: ignore[index]
    assert results[1][0].pk == alice.pk  # type: ignore[index]

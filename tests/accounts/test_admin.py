"""Django admin for users, applications and memberships."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from accounts import services
from accounts.models import Application, Membership

pytestmark = pytest.mark.django_db


def test_staff_see_users_and_applications(staff_client):
    user = services.get_or_create_user("user_listed")
    for name in ("accounts_user_changelist", "accounts_application_changelist"):
        response = staff_client.get(reverse(f"admin:{name}"))
        assert response.status_code == 200
    assert Application.objects.filter(pk=user.default_application_id).exists()
    response = staff_client.get(reverse("admin:accounts_application_change", args=[quote(user.default_application_id)]))
    notices = [str(m) for m in response.wsgi_request._messages] if response.status_code == 302 else []
    assert response.status_code == 200, (response.get("Location"), notices)
    assert "user_listed" in response.content.decode()


def test_staff_add_a_member_to_an_application(staff_client):
    app = Application.objects.create(name="desk")
    user = services.get_or_create_user("joiner")
    response = staff_client.post(
        reverse("admin:accounts_application_change", args=[quote(app.id)]),
        {
            "name": "desk",
            "is_active": "on",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": str(user.pk),
            "memberships-0-role": "admin",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Membership.objects.get(application=app, user=user).role == "admin"


def test_non_staff_are_sent_to_login(client, alice):
    client.force_login(alice)
    response = client.get(reverse("admin:accounts_application_changelist"))
    assert response.status_code == 302 and "login" in response["Location"]

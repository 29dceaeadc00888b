"""Demo users and application for ``make run`` (``manage.py seed_demo``, in
ledgercore, seeds every app's demo data on top of these)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from accounts import services
from accounts.models import Application, Membership, User

DEMO_USER = "demo_user"
DEMO_TEAMMATE = "demo_teammate"
DEMO_APPLICATION_ID = "app_demo"


@dataclass
class DemoData:
    application: Application
    members: list[User]


@transaction.atomic
def seed_demo() -> DemoData:
    application, _ = Application.objects.get_or_create(id=DEMO_APPLICATION_ID, defaults={"name": "Demo trading desk"})
    members = []
    for user_id, role in ((DEMO_USER, Membership.Role.OWNER), (DEMO_TEAMMATE, Membership.Role.MEMBER)):
        user, created = User.objects.get_or_create(username=user_id)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        services.add_member(application, user, role)
        if user.default_application_id != application.id:
            user.default_application = application
            user.save(update_fields=["default_application"])
        members.append(user)
    return DemoData(application=application, members=members)

"""Users and the applications (tenants) they belong to."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


def new_application_id() -> str:
    return "app_" + secrets.token_hex(12)


class User(AbstractUser):
    """A person or program. ``username`` holds the identity provider's subject
    (the Clerk user id), which is the ``userId`` of the wire protocol."""

    default_application = models.ForeignKey(
        "accounts.Application",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Application that connections are bound to when none is named.",
    )

    @property
    def user_id(self) -> str:
        return self.username


class Application(models.Model):
    """A tenant: credits, prices, limits and private data are per application."""

    id = models.CharField(primary_key=True, max_length=64, default=new_application_id, editable=False)
    name = models.CharField(max_length=200)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="applications")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "user"], name="membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.application} ({self.role})"

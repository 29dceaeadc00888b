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


class ApiKeyScope(models.TextChoices):
    MARKET_READ = "market:read", "Read candles"
    QUERY_RUN = "query:run", "Run queries (charged)"
    CREDITS_READ = "credits:read", "Read the ledger"
    COMPLIANCE_READ = "compliance:read", "Read analyses"
    BROADCAST = "broadcast", "Broadcast to the application"


class ApiKey(models.Model):
    """A key for server-to-server calls: it acts as ``user`` in ``application``
    within its ``scopes``. Only the SHA-256 of the key is stored; the key
    (``lck_<prefix>_<secret>``) is shown once, when it is created."""

    name = models.CharField(max_length=100, help_text="What the key is for.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text="The key acts as this user (whose credits and rows it uses).",
    )
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="api_keys", help_text="The only application it reaches."
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False, help_text="Public part, to recognise it.")
    key_hash = models.CharField(max_length=64, editable=False, help_text="SHA-256 of the whole key (hex).")
    scopes = models.JSONField(default=list, help_text="What the key may do.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused after this time (empty: never).")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (lck_{self.prefix}_…)"

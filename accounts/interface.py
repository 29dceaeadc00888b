"""What the other apps may use of accounts (import-linter enforces it):
the user model, finding or creating a user, and the demo seed's handle."""

from __future__ import annotations

from accounts.apikeys import ApiKeyScopes
from accounts.demo import DemoData
from accounts.models import User
from accounts.services import get_or_create_user

__all__ = ["ApiKeyScopes", "DemoData", "User", "get_or_create_user"]

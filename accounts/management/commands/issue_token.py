from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import services as accounts
from realtime.auth import issue_dev_token


class Command(BaseCommand):
    help = "Print a development (HS256) token for USER_ID, signed with LEDGERCORE_DEV_JWT_SECRET."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user_id")
        parser.add_argument("--app", dest="application_id", help="Application the token binds to.")
        parser.add_argument("--ttl", type=int, default=86400, help="Lifetime in seconds (default 86400).")

    def handle(self, *args: Any, **options: Any) -> None:
        user_id = options["user_id"]
        if not accounts.USER_ID_RE.match(user_id):
            raise CommandError("USER_ID may contain only letters, digits and @.+_-")
        try:
            token = issue_dev_token(user_id, options["application_id"], options["ttl"])
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(token)

from django.apps import AppConfig

from realtime import tenancy


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Users and applications"

    def ready(self) -> None:
        # Imported here: models cannot be imported before the app registry is ready.
        from accounts.binding import AccountsTenancy  # noqa: PLC0415

        tenancy.install(AccountsTenancy())

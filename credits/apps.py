from django.apps import AppConfig
from django.db.models.signals import post_save

from realtime import background, charging


class CreditsConfig(AppConfig):
    name = "credits"

    def ready(self) -> None:
        # Imported here: they import models, which cannot be imported before
        # the app registry is ready.
        from credits import events, relay  # noqa: PLC0415
        from credits.handlers import LedgerCharger  # noqa: PLC0415
        from credits.models import LedgerEntry  # noqa: PLC0415

        # The registry's charging path charges through the ledger.
        charging.install(LedgerCharger())
        background.register("credit outbox relay", relay.start_relay)
        # The ledger model's signal: every new entry's events are pushed to
        # user:<userId> once its transaction commits.
        post_save.connect(events.push_after_commit, sender=LedgerEntry, dispatch_uid="credits-push-after-commit")

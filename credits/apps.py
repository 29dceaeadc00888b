from django.apps import AppConfig

from realtime import background, charging


class CreditsConfig(AppConfig):
    name = "credits"

    def ready(self) -> None:
        # Imported here: they import models, which cannot be imported before
        # the app registry is ready.
        from credits import relay
        from credits.handlers import LedgerCharger

        # The registry's charging path charges through the ledger.
        charging.install(LedgerCharger())
        background.register("credit outbox relay", relay.start_relay)

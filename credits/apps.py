from django.apps import AppConfig

from realtime import background, charging
from realtime import metrics as realtime_metrics


class CreditsConfig(AppConfig):
    name = "credits"

    def ready(self) -> None:
        # Imported here: they import models, which cannot be imported before
        # the app registry is ready.
        from credits import metrics, relay, signals  # noqa: PLC0415
        from credits.handlers import LedgerCharger  # noqa: PLC0415

        # The registry's charging path charges through the ledger.
        charging.install(LedgerCharger())
        background.register("credit outbox relay", relay.start_relay)
        # Every ledger entry saved writes its outbox row: its events are
        # pushed to user:<id> after commit.
        signals.connect()
        realtime_metrics.register_collector("credit ledger", metrics.collect)

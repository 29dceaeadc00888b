from django.apps import AppConfig


class LedgerCoreConfig(AppConfig):
    """The project's wiring as an app, for the management commands that
    orchestrate several apps (``serve``, ``seed_demo``)."""

    name = "ledgercore"
    verbose_name = "LedgerCore"

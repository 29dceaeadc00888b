from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime protocol"

    def ready(self) -> None:
        # Every app declares its events in its own handlers.py; importing them
        # fills the one registry.
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("handlers")

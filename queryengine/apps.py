from django.apps import AppConfig


class QueryEngineConfig(AppConfig):
    name = "queryengine"
    verbose_name = "Query engine"

    def ready(self) -> None:
        # Imported here: the models these modules import need the app registry ready.
        from queryengine.config import check_settings  # noqa: PLC0415
        from queryengine.tables import register_builtin_tables  # noqa: PLC0415

        check_settings()
        register_builtin_tables()

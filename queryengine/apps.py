from django.apps import AppConfig


class QueryEngineConfig(AppConfig):
    name = "queryengine"
    verbose_name = "Query engine"

    def ready(self) -> None:
        from queryengine.tables import register_builtin_tables

        register_builtin_tables()

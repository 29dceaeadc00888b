from django.apps import AppConfig


class MarketDataConfig(AppConfig):
    name = "marketdata"
    verbose_name = "Market data"

    def ready(self) -> None:
        # Imported here: the models these modules import need the app registry ready.
        from marketdata.catalog import register_market_tables

        register_market_tables()

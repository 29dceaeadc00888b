from django.apps import AppConfig


class MarketDataConfig(AppConfig):
    name = "marketdata"
    verbose_name = "Market data"

    def ready(self) -> None:
        from marketdata.catalog import register_market_tables

        register_market_tables()

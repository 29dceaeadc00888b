from django.apps import AppConfig

from realtime import background


class MarketDataConfig(AppConfig):
    name = "marketdata"
    verbose_name = "Market data"

    def ready(self) -> None:
        # Imported here: the models these modules import need the app registry ready.
        from marketdata.catalog import register_market_tables  # noqa: PLC0415
        from marketdata.demo import start_demo_feed  # noqa: PLC0415

        register_market_tables()
        background.register("market demo feed", start_demo_feed)

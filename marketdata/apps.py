from django.apps import AppConfig


class MarketDataConfig(AppConfig):
    name = "marketdata"

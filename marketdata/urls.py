from django.urls import path

from marketdata import api, candles_api

urlpatterns = [
    path("trades", api.TradeIngestView.as_view(), name="market-trades"),
    path("candles", candles_api.CandlesView.as_view(), name="market-candles"),
]

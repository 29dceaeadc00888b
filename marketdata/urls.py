from django.urls import path

from marketdata import api

urlpatterns = [
    path("trades", api.TradeIngestView.as_view(), name="market-trades"),
]

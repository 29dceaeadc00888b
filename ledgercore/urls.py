from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from accounts.views import ApplicationBroadcastView, MeView
from ledgercore.console import console
from realtime import views

urlpatterns = [
    path("", console, name="console"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("api/asyncapi.json", views.asyncapi_document, name="asyncapi"),
    path("api/me", MeView.as_view(), name="me"),
    path("api/applications/<str:application_id>/broadcast", ApplicationBroadcastView.as_view(), name="broadcast"),
    path("api/credits/", include("credits.urls")),
    path("api/query/", include("queryengine.urls")),
    path("api/market/", include("marketdata.urls")),
    path("api/compliance/", include("compliance.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]

from django.contrib import admin
from django.urls import path

from accounts.views import ApplicationBroadcastView, MeView
from realtime import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("api/asyncapi.json", views.asyncapi_document, name="asyncapi"),
    path("api/me", MeView.as_view(), name="me"),
    path("api/applications/<str:application_id>/broadcast", ApplicationBroadcastView.as_view(), name="broadcast"),
]

from django.contrib import admin
from django.urls import path

from realtime import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("api/asyncapi.json", views.asyncapi_document, name="asyncapi"),
]

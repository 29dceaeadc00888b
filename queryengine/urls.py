from django.urls import path

from queryengine import api

urlpatterns = [
    path("catalog/", api.CatalogView.as_view(), name="query-catalog"),
]

from django.urls import path

from queryengine import api, http

urlpatterns = [
    path("catalog/", api.CatalogView.as_view(), name="query-catalog"),
    path("run", http.QueryRunView.as_view(), name="query-run"),
]

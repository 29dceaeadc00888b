from django.urls import path

from compliance import api

urlpatterns = [
    path("analyses/", api.AnalysisListView.as_view(), name="compliance-analyses"),
    path("analyses/<str:job_id>", api.AnalysisDetailView.as_view(), name="compliance-analysis"),
]

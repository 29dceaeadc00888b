from django.urls import path

from credits import api, me_api

urlpatterns = [
    path("accounts/", api.AccountListView.as_view(), name="credit-accounts"),
    path("entries/", api.EntryListView.as_view(), name="credit-entries"),
    path("entries.csv", api.EntryCSVView.as_view(), name="credit-entries-csv"),
    path("me/entries", me_api.MyEntryListView.as_view(), name="credit-my-entries"),
    path("reconciliation/", api.ReconciliationView.as_view(), name="credit-reconciliation"),
]

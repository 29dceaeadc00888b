"""``GET /api/credits/me/entries``: the caller's own ledger in the
application the request is bound to, newest first (cursor-paginated),
whatever the caller's staff rights."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import ValidationError

from credits.api import ENTRY_FILTERS, EntryCursorPagination, LedgerEntrySerializer, parse_instant
from credits.models import EntryKind, LedgerEntry
from realtime.rest import bound_application

MY_FILTERS = [parameter for parameter in ENTRY_FILTERS if parameter.name in ("type", "from", "to")]


@extend_schema(parameters=MY_FILTERS)
class MyEntryListView(generics.ListAPIView):
    """Your ledger entries in the bound application, newest first."""

    api_key_scope = "credits:read"
    serializer_class = LedgerEntrySerializer
    pagination_class = EntryCursorPagination

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        queryset = LedgerEntry.objects.select_related("account__user").filter(
            account__user_id=self.request.user.pk, account__application_id=bound_application(self.request)
        )
        params = self.request.query_params
        if params.get("type"):
            if params["type"] not in EntryKind.values:
                raise ValidationError({"type": [f"Expected one of {', '.join(EntryKind.values)}."]})
            queryset = queryset.filter(kind=params["type"])
        if params.get("from"):
            queryset = queryset.filter(created_at__gte=parse_instant("from", params["from"]))
        if params.get("to"):
            queryset = queryset.filter(created_at__lt=parse_instant("to", params["to"]))
        return queryset

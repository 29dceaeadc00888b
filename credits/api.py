"""REST read API of the credit ledger: accounts, entries (JSON and CSV) and
reconciliation.

Users see their own accounts and entries; finance (staff, or holders of
``credits.view_ledgerentry``) sees everything and may filter by user.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, generics, permissions, renderers, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.interface import ApiKeyScopes
from credits.models import CreditAccount, EntryKind, LedgerEntry
from credits.reconcile import reconcile_accounts
from realtime.rest import StaffOrPermission
from realtime.streaming import stream_batches


# drf-spectacular registers the extension in its untyped __init_subclass__.
class BearerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Documents realtime.rest.BearerTokenAuthentication in the OpenAPI schema."""

    target_class = "realtime.rest.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


class IsFinance(StaffOrPermission):
    permission = "credits.view_ledgerentry"
    message = "only finance staff may see this"


# ---------------------------------------------------------------- serializers


class CreditAccountSerializer(serializers.ModelSerializer):
    userId = serializers.CharField(source="user.username", read_only=True)  # noqa: N815
    applicationId = serializers.CharField(source="application_id", read_only=True)  # noqa: N815
    lifetimeEarned = serializers.IntegerField(source="lifetime_earned", read_only=True)  # noqa: N815
    lifetimeSpent = serializers.IntegerField(source="lifetime_spent", read_only=True)  # noqa: N815
    lastSequence = serializers.IntegerField(source="last_sequence", read_only=True)  # noqa: N815
    expiring = serializers.IntegerField(read_only=True, help_text="Part of the balance that expires at some date.")
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)  # noqa: N815

    class Meta:
        model = CreditAccount
        fields = [
            "id",
            "userId",
            "applicationId",
            "balance",
            "lifetimeEarned",
            "lifetimeSpent",
            "expiring",
            "lastSequence",
            "updatedAt",
        ]
        read_only_fields = fields


class LedgerEntrySerializer(serializers.ModelSerializer):
    userId = serializers.CharField(source="account.user.username", read_only=True)  # noqa: N815
    applicationId = serializers.CharField(source="account.application_id", read_only=True)  # noqa: N815
    type = serializers.CharField(source="kind", read_only=True)
    balanceAfter = serializers.IntegerField(source="balance_after", read_only=True)  # noqa: N815
    actorType = serializers.CharField(source="actor_type", read_only=True)  # noqa: N815
    actorId = serializers.CharField(source="actor_id", read_only=True)  # noqa: N815
    idempotencyKey = serializers.CharField(source="idempotency_key", read_only=True)  # noqa: N815
    reverses = serializers.IntegerField(source="reverses_id", read_only=True, allow_null=True)
    hold = serializers.IntegerField(source="hold_id", read_only=True, allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)  # noqa: N815
    prevHash = serializers.CharField(source="prev_hash", read_only=True)  # noqa: N815

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "userId",
            "applicationId",
            "sequence",
            "type",
            "amount",
            "spent",
            "balanceAfter",
            "action",
            "reason",
            "actorType",
            "actorId",
            "reference",
            "idempotencyKey",
            "reverses",
            "hold",
            "createdAt",
            "prevHash",
            "hash",
        ]
        read_only_fields = fields


class AccountReportSerializer(serializers.Serializer):
    account_id = serializers.IntegerField()
    user_id = serializers.CharField()
    application_id = serializers.CharField()
    balance = serializers.IntegerField()
    entries_sum = serializers.IntegerField()
    last_sequence = serializers.IntegerField()
    ok = serializers.BooleanField()
    problems = serializers.ListField(child=serializers.CharField())


# ---------------------------------------------------------------- filters


def parse_instant(name: str, value: str) -> datetime:
    """An ISO 8601 datetime (naive means UTC) or epoch milliseconds."""
    value = value.strip()
    try:
        if value.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        parsed = parse_datetime(value)
    except (ValueError, OverflowError, OSError):
        parsed = None
    if parsed is None:
        raise exceptions.ValidationError({name: ["Expected an ISO 8601 datetime or epoch milliseconds."]})
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise exceptions.ValidationError({name: ["Out of the representable range of datetimes."]}) from None


ACCOUNT_FILTERS = [
    OpenApiParameter("user", OpenApiTypes.STR, description="Username (finance only; others see their own)."),
    OpenApiParameter("application", OpenApiTypes.STR, description="Application id."),
]
ENTRY_FILTERS = [
    *ACCOUNT_FILTERS,
    OpenApiParameter("type", OpenApiTypes.STR, enum=EntryKind.values, description="Entry kind."),
    OpenApiParameter("from", OpenApiTypes.STR, description="Created at or after (ISO 8601 or epoch ms)."),
    OpenApiParameter("to", OpenApiTypes.STR, description="Created before (ISO 8601 or epoch ms)."),
]


def visible_accounts(request: Request) -> QuerySet[CreditAccount]:
    queryset = CreditAccount.objects.select_related("user")
    if not IsFinance.allows(request.user):
        queryset = queryset.filter(user_id=request.user.pk)
    params = request.query_params
    if params.get("user"):
        queryset = queryset.filter(user__username=_text(params, "user"))
    if params.get("application"):
        queryset = queryset.filter(application_id=_text(params, "application"))
    return queryset


def _text(params: Any, name: str) -> str:
    """A text filter; NUL is refused (no stored name or id holds one, and
    PostgreSQL refuses it in a parameter)."""
    value = str(params[name])
    if "\x00" in value:
        raise exceptions.ValidationError({name: ["Null characters are not allowed."]})
    return value


def visible_entries(request: Request) -> QuerySet[LedgerEntry]:
    """Entries of the accounts the caller may see (same user/application
    scoping as visible_accounts), narrowed by type and time."""
    queryset = LedgerEntry.objects.select_related("account__user").filter(account__in=visible_accounts(request))
    params = request.query_params
    if params.get("type"):
        if params["type"] not in EntryKind.values:
            raise exceptions.ValidationError({"type": [f"Expected one of {', '.join(EntryKind.values)}."]})
        queryset = queryset.filter(kind=params["type"])
    if params.get("from"):
        queryset = queryset.filter(created_at__gte=parse_instant("from", params["from"]))
    if params.get("to"):
        queryset = queryset.filter(created_at__lt=parse_instant("to", params["to"]))
    return queryset


# ---------------------------------------------------------------- views


class EntryCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


@extend_schema(parameters=ACCOUNT_FILTERS)
class AccountListView(generics.ListAPIView):
    """Credit accounts of the caller (finance: all accounts)."""

    api_key_scope = "credits:read"

    serializer_class = CreditAccountSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[CreditAccount]:
        return visible_accounts(self.request).order_by("id")


@extend_schema(parameters=ENTRY_FILTERS)
class EntryListView(generics.ListAPIView):
    """Ledger entries of the caller's accounts (finance: all), newest first."""

    api_key_scope = "credits:read"

    serializer_class = LedgerEntrySerializer
    pagination_class = EntryCursorPagination

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        return visible_entries(self.request)


class _Echo:
    def write(self, value: str) -> str:
        return value


class CSVRenderer(renderers.BaseRenderer):
    """Lets content negotiation accept ``text/csv``; the view streams its own body."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> Any:
        # Only error bodies get here (the success path streams its own CSV).
        return b"" if data is None else json.dumps(data).encode()


CSV_COLUMNS = LedgerEntrySerializer.Meta.fields


def _csv_row(entry: LedgerEntry) -> list[Any]:
    return [
        entry.pk,
        entry.account.user.username,
        entry.account.application_id,
        entry.sequence,
        entry.kind,
        entry.amount,
        entry.spent,
        entry.balance_after,
        entry.action,
        entry.reason,
        entry.actor_type,
        entry.actor_id,
        entry.reference,
        entry.idempotency_key,
        entry.reverses_id if entry.reverses_id is not None else "",
        entry.hold_id if entry.hold_id is not None else "",
        entry.created_at.isoformat(),
        entry.prev_hash,
        entry.hash,
    ]


class EntryCSVView(APIView):
    """The same entries as ``entries/`` as a streamed CSV download, oldest
    first: read with a server-side cursor (``.iterator``) and sent in batches
    as they are read, never held whole in memory."""

    api_key_scope = "credits:read"

    renderer_classes = [renderers.JSONRenderer, CSVRenderer]

    @extend_schema(parameters=ENTRY_FILTERS, responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request) -> StreamingHttpResponse:
        queryset = visible_entries(request).order_by("id")
        writer = csv.writer(_Echo())

        def rows() -> Iterator[str]:
            yield writer.writerow(CSV_COLUMNS)
            for entry in queryset.iterator(chunk_size=2000):
                yield writer.writerow(_csv_row(entry))

        # An asynchronous body: under ASGI a synchronous one would be read whole first.
        response = StreamingHttpResponse(stream_batches(rows()), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="ledger-entries.csv"'
        return response


class ReconciliationView(APIView):
    """Reconcile every account against its entries (finance only)."""

    # No api_key_scope: API keys are refused here.
    permission_classes = [permissions.IsAuthenticated, ApiKeyScopes, IsFinance]

    @extend_schema(
        responses=inline_serializer(
            "Reconciliation",
            {
                "ok": serializers.BooleanField(),
                "accounts": serializers.IntegerField(),
                "failures": AccountReportSerializer(many=True),
            },
        )
    )
    def get(self, request: Request) -> Response:
        reports = reconcile_accounts()
        failures = [report.as_dict() for report in reports if not report.ok]
        return Response({"ok": not failures, "accounts": len(reports), "failures": failures})

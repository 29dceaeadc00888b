"""Admin: staff curate entities, labels and clusters; chain data is imported,
never typed in, so chains, addresses and transactions are read-only.

The chain tables hold hundreds of thousands of rows: their change lists skip
the full COUNT(*) (``show_full_result_count``), search by exact address or
hash (an indexed lookup, not a LIKE scan), and use raw-id widgets.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from compliance import services
from compliance.admin_render import render_result
from compliance.models import (
    Address,
    AddressLabel,
    AnalysisJob,
    Asset,
    Chain,
    Cluster,
    Entity,
    LabelImport,
    ListSnapshot,
    Transaction,
    Transfer,
    TxInput,
    TxOutput,
)
from realtime.admin import ReadOnlyAdmin, ReadOnlyInline

MEMBER_SAMPLE = 20


class ReadOnlyTableAdmin(ReadOnlyAdmin):
    """Read-only, and listed without the full COUNT(*)."""

    show_full_result_count = False


class ExactSearchAdmin(ReadOnlyTableAdmin):
    """Search on one exact, normalised value (an address or hash) so that the
    lookup uses the unique index; the chain's own normal form is unknown
    here, so both the given text and its lowercase are tried."""

    exact_field = ""
    search_fields = ("=id",)  # only to show the search box

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(**{f"{self.exact_field}__in": {term, term.lower()}}), False


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@admin.register(Chain)
class ChainAdmin(ReadOnlyTableAdmin):
    list_display = ("code", "name", "kind", "native_symbol", "native_decimals", "analysed")
    list_filter = ("kind", "analysed")
    search_fields = ("code", "name", "native_symbol")


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Symbols and decimals of imported tokens can be filled in by staff."""

    list_display = ("id", "chain", "symbol", "name", "contract", "decimals")
    list_filter = ("chain",)
    list_select_related = ("chain",)
    search_fields = ("symbol", "=contract")
    readonly_fields = ("chain", "contract")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LabelInline(admin.TabularInline):  # type: ignore[type-arg]
    model = AddressLabel
    fields = ("entity", "source", "source_version", "confidence", "listed_at", "delisted_at", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Address)
class AddressAdmin(ExactSearchAdmin):
    exact_field = "address"
    list_display = ("id", "chain", "address", "cluster", "first_seen_at", "last_seen_at")
    list_filter = ("chain",)
    list_select_related = ("chain",)
    inlines = [LabelInline]

    @admin.display(description="first seen (UTC)")
    def first_seen_at(self, obj: Address) -> str:
        return _time(obj.first_seen)

    @admin.display(description="last seen (UTC)")
    def last_seen_at(self, obj: Address) -> str:
        return _time(obj.last_seen)


class TransferInline(ReadOnlyInline):
    model = Transfer
    fields = ("index", "kind", "from_address", "to_address", "asset", "value")
    readonly_fields = fields


class InputInline(ReadOnlyInline):
    model = TxInput
    fields = ("index", "address", "value", "spent_tx_hash", "spent_output_index")
    readonly_fields = fields


class OutputInline(ReadOnlyInline):
    model = TxOutput
    fields = ("index", "address", "value")
    readonly_fields = fields


@admin.register(Transaction)
class TransactionAdmin(ExactSearchAdmin):
    exact_field = "hash"
    list_display = ("id", "chain", "hash", "block_number", "time", "status", "fee")
    list_filter = ("chain", "status")
    list_select_related = ("chain",)
    inlines = [TransferInline, InputInline, OutputInline]

    @admin.display(description="time (UTC)")
    def time(self, obj: Transaction) -> str:
        return _time(obj.timestamp)


@admin.register(Entity)
class EntityAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "category", "country", "created_at")
    list_filter = ("category", "country")
    search_fields = ("name",)


def delist_selected(modeladmin: AddressLabelAdmin, request: HttpRequest, queryset: QuerySet[AddressLabel]) -> None:
    closed = services.delist_labels(queryset)
    modeladmin.message_user(request, f"{closed} label(s) delisted; history kept.", messages.SUCCESS)


delist_selected.short_description = "Delist selected labels (keep history)"  # type: ignore[attr-defined]


@admin.register(AddressLabel)
class AddressLabelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Labels are history: staff add them or delist them, never delete."""

    list_display = ("id", "address", "entity", "source", "source_version", "confidence", "listed_at", "delisted_at")
    list_filter = ("source", "entity__category", ("delisted_at", admin.EmptyFieldListFilter))
    search_fields = ("=address__address", "entity__name", "source")
    list_select_related = ("address__chain", "entity")
    raw_id_fields = ("address",)
    autocomplete_fields = ("entity",)
    actions = [delist_selected]
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("address", "entity", "source", "source_version", "listed_at", "delisted_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Computed clusters: staff attribute them to an entity, nothing else."""

    list_display = ("id", "chain", "heuristic", "key", "size", "entity", "updated_at")
    list_filter = ("chain", "heuristic")
    search_fields = ("=key", "entity__name")
    list_select_related = ("chain", "entity")
    autocomplete_fields = ("entity",)
    readonly_fields = ("chain", "heuristic", "key", "size", "members", "created_at", "updated_at")
    show_full_result_count = False

    @admin.display(description="members")
    def members(self, obj: Cluster) -> str:
        # A cluster can hold tens of thousands of addresses: show a sample and
        # link to the filtered address list rather than render them all.
        sample = list(obj.addresses.order_by("address").values_list("address", flat=True)[:MEMBER_SAMPLE])
        url = reverse("admin:compliance_address_changelist") + f"?cluster={obj.pk}"
        return format_html(
            '{}{} <a href="{}">all members</a>',
            ", ".join(sample),
            " …" if obj.size > len(sample) else "",
            url,
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LabelImport)
class LabelImportAdmin(ReadOnlyTableAdmin):
    list_display = ("imported_at", "source", "version", "as_of", "listed", "delisted", "unchanged", "content_sha256")
    list_filter = ("source", "imported_at")
    search_fields = ("version", "=content_sha256")

    @admin.display(description="list dated")
    def as_of(self, obj: LabelImport) -> str:
        return str((obj.details or {}).get("as_of", "-"))


@admin.register(ListSnapshot)
class ListSnapshotAdmin(ReadOnlyTableAdmin):
    """The dated lists loaded (``import_ofac --as-of``): the labels' history is
    rebuilt from them in date order."""

    list_display = ("as_of", "source", "version", "entry_count", "loaded_at", "content_sha256")
    list_filter = ("source", "as_of")
    search_fields = ("version", "=content_sha256")
    date_hierarchy = "as_of"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ListSnapshot]:
        snapshots: QuerySet[ListSnapshot] = super().get_queryset(request)
        return snapshots.annotate(entry_total=Count("entries"))

    @admin.display(description="entries", ordering="entry_total")
    def entry_count(self, obj: ListSnapshot) -> int:
        return int(getattr(obj, "entry_total", 0))


@admin.register(AnalysisJob)
class AnalysisJobAdmin(ReadOnlyTableAdmin):
    """Jobs are written by the analysis only; staff read them to answer
    "what did the customer see, and why"."""

    list_display = ("id", "user", "application", "chain", "address", "hops", "status", "stage", "pct", "attempts")
    list_filter = ("status", "chain", "created_at")
    search_fields = ("=id", "=address", "user__username", "application__id")
    list_select_related = ("user", "application")
    readonly_fields = [*(f.name for f in AnalysisJob._meta.fields if f.name != "result"), "breakdown"]

    @admin.display(description="result")
    def breakdown(self, obj: AnalysisJob) -> Any:
        return render_result(obj.result)

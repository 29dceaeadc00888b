"""Admin: the ledger is read-only; balances change only through actions that
write entries (grant and adjustment, each with a mandatory reason)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from credits import services
from credits.models import BlockDraw, CreditAccount, CreditBlock, Hold, LedgerEntry, OutboxEvent, Price
from realtime.admin import ReadOnlyAdmin


class MovementForm(forms.Form):
    amount = forms.IntegerField(help_text="Credits; negative only for adjustments.")
    reason = forms.CharField(max_length=500, help_text="Mandatory: recorded on the ledger entry.")
    expires_at = forms.DateTimeField(
        required=False,
        help_text="Grants only, optional (UTC, YYYY-MM-DD HH:MM): what is not spent by then expires.",
    )

    def clean_reason(self) -> str:
        reason = str(self.cleaned_data["reason"]).strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason


def _movement_action(kind: str, title: str) -> Any:
    def action(modeladmin: CreditAccountAdmin, request: HttpRequest, queryset: QuerySet[CreditAccount]) -> Any:
        form = MovementForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            amount, reason = form.cleaned_data["amount"], form.cleaned_data["reason"]
            expires_at = form.cleaned_data.get("expires_at")
            if expires_at is not None and kind != "grant":
                modeladmin.message_user(request, "Only grants can expire.", messages.ERROR)
                return None
            actor = services.Actor.staff(request.user.get_username())
            done = 0
            for account in queryset:
                try:
                    if kind == "grant":
                        services.grant_credits(
                            account.user_id,
                            account.application_id,
                            amount,
                            reason=reason,
                            actor=actor,
                            action="admin_grant",
                            expires_at=expires_at,
                        )
                    else:
                        services.adjust_credits(
                            account.user_id, account.application_id, amount, reason=reason, actor=actor
                        )
                    done += 1
                except services.CreditError as exc:
                    modeladmin.message_user(request, f"{account}: {exc}", messages.ERROR)
            modeladmin.message_user(request, f"{title}: {done} account(s) updated.", messages.SUCCESS)
            return None
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "form": form,
            "accounts": queryset,
            "action": action.__name__,
            "opts": modeladmin.model._meta,
        }
        return TemplateResponse(request, "admin/credits/grant.html", context)

    action.__name__ = f"{kind}_credits"
    action.short_description = title  # type: ignore[attr-defined]
    return action


@admin.register(CreditAccount)
class CreditAccountAdmin(ReadOnlyAdmin):
    list_display = (
        "user",
        "application",
        "balance",
        "lifetime_earned",
        "lifetime_spent",
        "expiring",
        "last_sequence",
        "updated_at",
    )
    search_fields = ("user__username", "application__id", "application__name")
    list_filter = ("application",)
    list_select_related = ("user", "application")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # One user's accounts: the link on the user's admin page.
        return lookup == "user__id__exact" or super().lookup_allowed(lookup, value, request)

    actions = [_movement_action("grant", "Grant credits"), _movement_action("adjust", "Adjust credits")]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Needed for the actions; the form itself shows no editable field.
        return bool(request.user.has_perm("credits.change_creditaccount"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in CreditAccount._meta.fields]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "account",
        "sequence",
        "kind",
        "amount",
        "balance_after",
        "action",
        "actor_type",
        "actor_id",
        "created_at",
    )
    list_filter = ("kind", "actor_type", "created_at")
    search_fields = ("account__user__username", "account__application__id", "reference", "idempotency_key", "action")
    list_select_related = ("account__user",)
    date_hierarchy = "created_at"

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # One user's entries: the link on the user's admin page.
        return lookup == "account__user__id__exact" or super().lookup_allowed(lookup, value, request)


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "amount", "captured", "status", "action", "expires_at", "closed_at")
    list_filter = ("status", "action", "expires_at")
    search_fields = ("account__user__username", "account__application__id", "reference", "action")
    list_select_related = ("account__user",)


class BlockDrawInline(admin.TabularInline):  # type: ignore[type-arg]
    model = BlockDraw
    fields = ("entry", "amount")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CreditBlock)
class CreditBlockAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "amount", "remaining", "expires_at", "expired_at", "grant", "expiry")
    list_filter = ("expired_at", "expires_at")
    search_fields = ("account__user__username", "account__application__id")
    list_select_related = ("account__user", "grant", "expiry")
    inlines = [BlockDrawInline]


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "entry", "created_at", "delivered_at", "attempts")
    list_filter = (("delivered_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("=entry__id", "entry__account__user__username", "entry__reference")
    list_select_related = ("entry__account__user",)


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("application", "action", "amount")
    search_fields = ("application__id", "application__name", "action")
    list_filter = ("action",)
    list_select_related = ("application",)

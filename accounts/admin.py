from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from accounts.models import Application, Membership, User


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]  # generic only in django-stubs
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):  # type: ignore[type-arg]
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("LedgerCore", {"fields": ("default_application",)}),
    )
    list_display = ("username", "email", "is_staff", "default_application", "date_joined")
    list_filter = (*DjangoUserAdmin.list_filter, "default_application")
    autocomplete_fields = ["default_application"]
    readonly_fields = ("finance_links",)

    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return (*fieldsets, ("Credits", {"fields": ("finance_links",)}))

    @admin.display(description="ledger")
    def finance_links(self, obj: User) -> Any:
        """Links (by URL name: the credits app sits above this one) to the
        user's ledger entries, their CSV export and the reconciliation."""
        links = []
        for label, name, query in (
            ("Ledger entries", "admin:credits_ledgerentry_changelist", {"account__user__id__exact": obj.pk}),
            ("Credit accounts", "admin:credits_creditaccount_changelist", {"user__id__exact": obj.pk}),
            ("Ledger CSV export", "credit-entries-csv", {"user": obj.username}),
            ("Reconciliation report", "credit-reconciliation", {}),
        ):
            try:
                url = reverse(name)
            except NoReverseMatch:
                continue
            links.append((f"{url}?{urlencode(query)}" if query else url, label))
        return format_html("<ul>{}</ul>", format_html_join("", '<li><a href="{}">{}</a></li>', links))


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "name", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("id", "name")
    readonly_fields = ("id", "created_at")
    inlines = [MembershipInline]

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts import apikeys
from accounts.models import ApiKey, ApiKeyScope, Application, Membership, User


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


SHOWN_ONCE = "_plain_key_shown_once"


class ApiKeyForm(forms.ModelForm):  # type: ignore[type-arg]  # generic only in django-stubs
    scopes = forms.MultipleChoiceField(choices=ApiKeyScope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ("name", "user", "application", "scopes", "expires_at")

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        user, application = cleaned.get("user"), cleaned.get("application")
        member = Membership.objects.filter(user=user, application=application).exists()
        if user is not None and application is not None and not member:
            raise forms.ValidationError("The user must be a member of the application.")
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Keys are created here; the key is shown once, on the page that follows
    its creation, and never stored (only its SHA-256)."""

    form = ApiKeyForm
    list_display = ("name", "prefix", "user", "application", "scope_list", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at", "application")
    search_fields = ("name", "prefix", "user__username", "application__id", "application__name")
    autocomplete_fields = ["user", "application"]
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_keys"]

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        # A key's owner, application and scopes are fixed: make a new key instead.
        if obj is not None:
            return (*self.readonly_fields, "user", "application", "scopes")
        return self.readonly_fields

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["fields"] = ("name", "expires_at")
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        prefix, key = apikeys.new_key()
        obj.prefix, obj.key_hash = prefix, apikeys.hash_key(key)
        obj.scopes = sorted(set(form.cleaned_data["scopes"]))
        super().save_model(request, obj, form, change)
        # Kept on this instance only, for response_add of this same request.
        setattr(obj, SHOWN_ONCE, key)

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        key = getattr(obj, SHOWN_ONCE, None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "api_key": obj,
            "key": key,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/accounts/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} key(s) revoked.")

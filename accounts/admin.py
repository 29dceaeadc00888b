from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

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
    autocomplete_fields = ["default_application"]


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "name", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("id", "name")
    readonly_fields = ("id", "created_at")
    inlines = [MembershipInline]

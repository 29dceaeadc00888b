"""Every model staff use in the admin has search and list filters that work:
each change list answers a search (and finds the object searched for) and
each of its filters, alone and with the search."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone

from accounts.apikeys import create_key
from accounts.models import Application
from chat.models import Conversation, Message
from compliance.clustering import cluster_addresses
from compliance.demo import seed_compliance_data
from compliance.models import AnalysisJob
from compliance.ofac import default_ofac_directory, import_ofac_lists
from credits import services as credits
from credits.models import Price
from marketdata.models import Venue
from queryengine.models import QueryLimits, QueryRecord
from tests.factories import funded
from tests.marketdata.test_marketdata import import_fixture
from tests.wsclient import unique

pytestmark = pytest.mark.django_db

PROJECT_APPS = {"accounts", "credits", "compliance", "marketdata", "queryengine", "realtime", "chat"}
# A handful of rows with a code and a name: searched, nothing to filter on.
NO_FILTER: set[type[Model]] = {Venue}


def project_admins() -> list[tuple[type[Model], admin.ModelAdmin[Any]]]:
    return sorted(
        (
            (model, model_admin)
            for model, model_admin in admin.site._registry.items()
            if model._meta.app_label in PROJECT_APPS
        ),
        key=lambda pair: pair[0]._meta.label,
    )


def seed() -> None:
    user, app = funded(unique("alice"), 100, 20)
    credits.deduct_credits(user.pk, app, 5, action="query", actor=credits.Actor.user(user.username))
    credits.hold_credits(
        user.pk, app, 3, action="query", reference="conn-1:req-1", actor=credits.Actor.user(user.username)
    )
    expiring = timezone.now() + timedelta(days=30)
    credits.grant_credits(user.pk, app, 10, reason="trial", actor=credits.Actor.system(), expires_at=expiring)
    Price.objects.create(application_id=app, action="query", amount=2)
    application = Application.objects.get(pk=app)
    create_key(name="reporting", user=user, application=application, scopes=["credits:read"])
    QueryLimits.objects.create(application=application, max_rows=500)
    QueryRecord.objects.create(user=user, application=application, sql="SELECT 1", status="completed", rows_returned=1)
    conversation = Conversation.objects.create(id="conv-admin-1", owner=user, application=application, title="volume")
    Message.objects.create(conversation=conversation, role="user", content="What was the volume?")
    Message.objects.create(conversation=conversation, role="assistant", content="42", sql="SELECT 42", tokens=3)
    import_fixture()
    directory = default_ofac_directory()
    assert directory is not None
    import_ofac_lists(directory)
    seed_compliance_data(transfers=1_000, seed=3)
    cluster_addresses("bitcoin")
    AnalysisJob.objects.create(
        id="job_admin_1", user=user, application=application, chain="ethereum", address="0x" + "ab" * 20, hops=2
    )


def search_term(model_admin: admin.ModelAdmin[Any], obj: Model) -> str:
    """A value of ``obj`` in one of the admin's search fields."""
    exact = getattr(model_admin, "exact_field", "")
    fields = [exact] if exact else [field.lstrip("=^@") for field in model_admin.search_fields]
    for path in fields:
        value: Any = obj
        for part in path.split("__"):
            value = getattr(value, part, None)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)
    raise AssertionError(f"{type(obj).__name__}: no search field has a value to search for")


def test_every_model_staff_use_has_search_and_filters():
    admins = project_admins()
    assert len(admins) >= 25
    for model, model_admin in admins:
        assert model_admin.search_fields, f"{model._meta.label} has no search"
        if model not in NO_FILTER:
            assert model_admin.list_filter, f"{model._meta.label} has no list filter"


def test_each_change_list_answers_a_search_and_its_filters(staff_client):
    seed()
    for model, model_admin in project_admins():
        label = model._meta.label
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        page = staff_client.get(url)
        assert page.status_code == 200, label
        changelist = page.context["cl"]
        first = changelist.queryset.first()
        assert first is not None, f"{label}: nothing seeded"
        term = search_term(model_admin, first)
        found = staff_client.get(url, {"q": term})
        assert found.status_code == 200, (label, term)
        assert found.context["cl"].queryset.filter(pk=first.pk).exists(), (label, term)
        for spec in changelist.filter_specs:
            choices = list(spec.choices(changelist))
            assert len(choices) > 1, (label, spec.title)
            query = choices[1]["query_string"]  # the first choice past "All"
            filtered = staff_client.get(url + query)
            assert filtered.status_code == 200, (label, spec.title, query)
            both = staff_client.get(url + query + ("&" if "?" in query else "?") + f"q={term}")
            assert both.status_code == 200, (label, spec.title, query, term)


def test_lists_show_chain_names_not_codes(staff_client):
    seed_compliance_data(transfers=1_000, seed=3)
    page = staff_client.get(reverse("admin:compliance_address_changelist")).content.decode()
    assert "Ethereum" in page and "Bitcoin" in page

"""HTTP endpoints, the AsyncAPI document, settings validation, commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pytest
from django.core.management import call_command

from accounts.models import Application, User
from realtime.asyncapi import build_document
from realtime.rooms import group_name
from tests.wsclient import DEV_SECRET

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_EVENTS = {
    "connected": ["userId", "sid", "timestamp"],
    "ping": [],
    "pong": ["timestamp"],
    "subscribe": ["room"],
    "unsubscribe": ["room"],
    "subscribed": ["room", "subscriberCount"],
    "unsubscribed": ["room"],
    "user_joined_room": ["userId", "room", "joinedAt"],
    "user_left_room": ["userId", "room", "leftAt"],
    "rate_limit_error": ["code", "message", "retryAfter"],
    "validation_error": ["code", "message", "errors", "event"],
}


def http_get(live_server_url: str, path: str) -> tuple[int, dict]:
    url = live_server_url.replace("ws://", "http://") + path
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.django_db(transaction=True)
def test_healthz_and_readyz_answer_on_the_real_server(live_server_url):
    assert http_get(live_server_url, "/healthz") == (200, {"status": "ok"})
    status, body = http_get(live_server_url, "/readyz")
    assert status == 200, body
    assert body["checks"]["database"] == "ok" and body["checks"]["channel_layer"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_readyz_reports_a_database_that_does_not_answer(live_server_url, monkeypatch):
    from realtime import views

    def down() -> None:
        raise ConnectionError("database is down")

    monkeypatch.setattr(views, "_database_answers", down)
    status, body = http_get(live_server_url, "/readyz")
    assert status == 503 and body["checks"]["database"].startswith("failed")


def test_asyncapi_document_lists_every_system_event_with_its_fields(live_server_url):
    status, document = http_get(live_server_url, "/api/asyncapi.json")
    assert status == 200
    assert document["asyncapi"] == "3.0.0"
    messages = document["channels"]["ws"]["messages"]
    for name, fields in SYSTEM_EVENTS.items():
        assert name in messages, name
        data = messages[name]["payload"]["properties"]["data"]
        assert set(fields) <= set(data["properties"]), (name, data)
    assert messages["subscribe"]["payload"]["properties"]["data"]["required"] == ["room"]
    assert document["operations"]["receive_subscribe"]["reply"]["messages"] == [
        {"$ref": "#/channels/ws/messages/subscribed"}
    ]
    assert document == json.loads(json.dumps(build_document()))


def test_asyncapi_management_command_prints_the_same_document(capsys):
    call_command("asyncapi")
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(build_document()))


def test_group_names_are_valid_short_and_distinct():
    rooms = [
        "user:abc",
        "user:ab_c",
        "user:ab.c",
        "user:ab-c",
        "market:BTC-USD:1s",
        "market:BTC-USD:1m",
        "address:ethereum:0x" + "a" * 40,
        "application:app_" + "x" * 200,
        "application:app_" + "x" * 201,
        "chat:ünïcødé",
    ]
    names = [group_name(room) for room in rooms]
    assert len(set(names)) == len(rooms)
    for name in names:
        assert len(name) < 100
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in name), name


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        check=False,
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://nope/db"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("LEDGERCORE_THROTTLE_RATES", "connection=fast"),
        ("LEDGERCORE_MAX_FRAME_BYTES", "lots"),
        ("DJANGO_DEBUG", "perhaps"),
        ("CLERK_JWT_KEY", "not a pem"),
        ("CLERK_LEEWAY_SECONDS", "-3"),
        ("LOG_LEVEL", "CHATTY"),
        ("LEDGERCORE_GC_THRESHOLDS", "1,2"),
        ("LOG_FORMAT", "xml"),
        # With DJANGO_DEBUG off (the default) no weak secret is accepted.
        ("DJANGO_SECRET_KEY", ""),
        ("DJANGO_SECRET_KEY", "insecure-embedded-default-change-me-in-production-4d1f8a"),
        ("DJANGO_SECRET_KEY", "django-insecure-" + "k" * 50),
        ("DJANGO_SECRET_KEY", "too-short-to-sign-sessions"),
        ("LEDGERCORE_DEV_JWT_SECRET", "secret"),
    ],
)
def test_bad_setting_fails_at_startup_naming_the_variable(variable, value):
    result = run_manage("check", env={variable: value})
    assert result.returncode != 0
    assert variable in result.stderr, result.stderr[-2000:]


def test_good_settings_start(tmp_path):
    result = run_manage(
        "check",
        env={
            "LEDGERCORE_VAR_DIR": str(tmp_path),
            "LEDGERCORE_THROTTLE_RATES": "connection=10/s,expensive=5/min",
            "DJANGO_ALLOWED_HOSTS": "example.com,api.example.com",
        },
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_issue_token_prints_a_dev_token_for_the_user_and_app(capsys):
    call_command("issue_token", "someone", "--app", "app_x", "--ttl", "120")
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, DEV_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "someone" and claims["app"] == "app_x"
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.django_db
def test_seed_demo_is_idempotent_grants_once_and_prices_the_charged_events():
    from credits.demo import DEMO_GRANT, DEMO_PRICES
    from credits.models import Price
    from credits.services import get_balance, price_of
    from realtime.registry import registry

    call_command("seed_demo")
    call_command("seed_demo")
    app = Application.objects.get(id="app_demo")
    assert sorted(app.members.values_list("username", flat=True)) == ["demo_teammate", "demo_user"]
    assert User.objects.get(username="demo_user").default_application_id == "app_demo"
    assert Application.objects.filter(id="app_demo").count() == 1
    # The opening grant, once.
    balance = get_balance(User.objects.get(username="demo_user").pk, "app_demo")
    assert (balance.balance, balance.sequence) == (DEMO_GRANT, 1)
    # Every charged event of the registry has a non-zero demo price.
    charged = {spec.price for spec in registry.inbound_events.values() if spec.price}
    assert charged == {"query", "chat", "address_analysis"} == set(DEMO_PRICES)
    assert {action: price_of("app_demo", action) for action in charged} == DEMO_PRICES
    assert all(amount > 0 for amount in DEMO_PRICES.values())
    assert Price.objects.filter(application_id="app_demo").count() == len(DEMO_PRICES)
    # A price staff changed in admin stays as they set it.
    Price.objects.filter(application_id="app_demo", action="query").update(amount=7)
    call_command("seed_demo")
    assert price_of("app_demo", "query") == 7


@pytest.mark.django_db
def test_seed_demo_tops_up_a_smaller_opening_grant_of_an_older_seed_once():
    from accounts.demo import seed_demo
    from credits import services
    from credits.demo import DEMO_GRANT, seed_credits

    demo = seed_demo()
    user = User.objects.get(username="demo_user")
    services.grant_credits(  # what seed_demo granted before the grant was raised
        user.pk,
        "app_demo",
        1000,
        reason="demo opening balance",
        actor=services.Actor.system(),
        action="seed_demo",
        idempotency_key="seed_demo:opening",
    )
    services.deduct_credits(user.pk, "app_demo", 30, action="query", actor=services.Actor.system())
    assert seed_credits(demo).granted == 2 * DEMO_GRANT - 1000  # the teammate had none
    assert seed_credits(demo).granted == 0
    balance = services.get_balance(user.pk, "app_demo")
    assert (balance.balance, balance.sequence) == (DEMO_GRANT - 30, 3)


PRODUCTION = {
    "DJANGO_SECRET_KEY": "Qm9vdHN0cmFwLXNlY3JldC1rZXktZm9yLWNoZWNrLWRlcGxveS10ZXN0cy0xMjM0",
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
    "LEDGERCORE_ALLOWED_ORIGINS": "https://app.example.com",
    "LEDGERCORE_HTTPS": "true",
}


def test_check_deploy_gives_no_warning_under_production_settings(tmp_path):
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION, "LEDGERCORE_VAR_DIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr and "issues" not in result.stdout.replace("no issues", ""), result.stdout


def test_debug_on_accepts_a_missing_secret_key(tmp_path):
    env = {"DJANGO_DEBUG": "true", "DJANGO_SECRET_KEY": "", "LEDGERCORE_VAR_DIR": str(tmp_path)}
    assert run_manage("check", env=env).returncode == 0


def test_security_headers_on_every_response(client):
    response = client.get("/healthz")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_https_redirects_http_but_not_the_probes(settings):
    from django.test import Client

    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client()
    redirected = client.get("/api/asyncapi.json")
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")
    assert client.get("/api/asyncapi.json", headers={"X-Forwarded-Proto": "https"}).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_cors_allows_only_the_configured_origins_on_the_api(settings, client):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
    allowed = client.options("/api/asyncapi.json", headers=preflight)
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
    other = client.options("/api/asyncapi.json", headers={**preflight, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other
    outside_api = client.options("/healthz", headers=preflight)
    assert "Access-Control-Allow-Origin" not in outside_api

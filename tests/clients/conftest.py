"""One real server process (daphne, as `make run`) for the client tests, on a
database with the demo users, their credits and the demo market data."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from credits.demo import DEMO_PRICES
from devtools.servers import DaphneProcess, manage
from tests.stacks import scaled_stack, stack_env
from tests.wsclient import dev_token, post_broadcast

# The demo users, application, credits and market data; not the demo
# compliance graph (most of seed_demo's time, and no client test needs it);
# "feeder" may post trades (POST /api/market/trades).
SEED = """
from accounts.demo import seed_demo
from credits.demo import seed_credits
from marketdata.demo import seed_market_data
from django.contrib.auth.models import Permission
from accounts import services
seed_credits(seed_demo())
seed_market_data()
feeder = services.get_or_create_user("feeder")
feeder.user_permissions.add(Permission.objects.get(codename="add_trade", content_type__app_label="marketdata"))
"""
# Charged actions at the demo application's prices (seed_credits), so that
# the balance moves.
QUERY_PRICE = DEMO_PRICES["query"]
ANALYSIS_PRICE = DEMO_PRICES["address_analysis"]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clients")
    with stack_env(
        tmp,
        scaled_stack(),
        DEVTOOLS_SEED_DEMO="0",
        LEDGERCORE_THROTTLE_RATES="connection=1000/s,user=1000/s",
        # Analyses run on the server's worker threads on either stack (no
        # separate db_worker process to start for the client tests).
        LEDGERCORE_JOBS="inprocess",
    ) as env:
        manage(env, "shell", "-c", SEED)
        process = DaphneProcess(env, tmp / "daphne.log").start()
        try:
            yield process
        finally:
            process.stop()


@pytest.fixture
def token() -> str:
    return dev_token("demo_user")


def broadcast(server: DaphneProcess, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST /api/applications/app_demo/broadcast as the demo application's owner."""
    return post_broadcast(server.http, "app_demo", "demo_user", data or {}, message)


def post_trade(server: DaphneProcess, trade_id: int, price: str) -> None:
    """One BTC-USD trade on binance, now, as the feeder."""
    request = urllib.request.Request(
        f"{server.http}/api/market/trades",
        data=json.dumps(
            {
                "trades": [
                    {
                        "venue": "binance",
                        "symbol": "BTC-USD",
                        "id": trade_id,
                        "timestamp": int(time.time() * 1000),
                        "price": price,
                        "size": "0.01",
                        "side": "buy",
                    }
                ]
            }
        ).encode(),
        headers={"Authorization": f"Bearer {dev_token('feeder')}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (200, 201, 202), response.status

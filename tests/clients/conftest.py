"""One real server process (daphne, as `make run`) for the client tests, on a
database with the demo users, their credits and the demo market data."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from devtools.servers import DaphneProcess, manage
from tests.stacks import scaled_stack, stack_env
from tests.wsclient import dev_token

# The demo users, application, credits and market data; not the demo
# compliance graph (most of seed_demo's time, and no client test needs it).
SEED = """
from accounts.demo import seed_demo
from credits.demo import seed_credits
from marketdata.demo import seed_market_data
seed_credits(seed_demo())
seed_market_data()
"""
# Charged actions, so that the balance moves.
QUERY_PRICE = 3
ANALYSIS_PRICE = 7


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clients")
    with stack_env(
        tmp,
        scaled_stack(),
        DEVTOOLS_SEED_DEMO="0",
        LEDGERCORE_THROTTLE_RATES="connection=1000/s,user=1000/s",
        LEDGERCORE_PRICES=f"query={QUERY_PRICE},address_analysis={ANALYSIS_PRICE}",
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
    request = urllib.request.Request(
        f"{server.http}/api/applications/app_demo/broadcast",
        data=json.dumps({"message": message, "data": data or {}}).encode(),
        headers={"Authorization": f"Bearer {dev_token('demo_user')}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return json.loads(response.read())

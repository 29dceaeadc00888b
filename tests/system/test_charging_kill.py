"""A server killed with SIGKILL at random moments during charged requests
leaves each hold captured (its request completed) or released (it did
not), never both and never neither, and a clean ledger; the holds of the
killed process are released by its successor.

Real processes: daphne killed and started again, on a fresh database of
the stack under test (the shared PostgreSQL only gets a new database).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devtools.chargefaults import KillRun, grant, pending_holds, server_rows, settlement_problems
from devtools.servers import manage
from tests.stacks import migrated_stack_env, scaled_stack
from tests.system.test_charging_faults import FAST_SQL, FAULT_ENV, MEDIUM_SQL

# Charged requests of the test (bench/charging_faults.py runs 500).
REQUESTS = 60


def _stack(tmp_path: Path) -> Any:
    return migrated_stack_env(tmp_path, scaled_stack(), **FAULT_ENV)


def test_kill_9_at_random_moments_leaves_every_hold_captured_or_released_once(tmp_path):
    with _stack(tmp_path) as env:
        users = [f"killed_{index}" for index in range(4)]
        grant(env, users, grants=12, amount=50)
        run = KillRun(env, tmp_path, users, requests=REQUESTS, seed=13)
        released_after = run.run([FAST_SQL, MEDIUM_SQL])
        assert run.kills >= 2, "the server was not killed during the requests"
        assert run.sent == REQUESTS
        assert pending_holds(env) == 0, f"holds still pending {released_after:.1f} s after the last kill"
        assert released_after < 60
        assert settlement_problems(env) == []
        completed = {
            qid for (qid,) in server_rows(env, "SELECT id FROM queryengine_queryrecord WHERE status = 'completed'")
        }
        assert run.completed <= completed  # every query_completed a client saw was charged
        captured = server_rows(env, "SELECT count(*) FROM credits_hold WHERE status = 'captured'")[0][0]
        assert captured == len(completed)
        assert "0 failing" in manage(env, "reconcile_ledger")

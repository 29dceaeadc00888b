"""Charged requests against real server processes that fail: the helpers
of the charging fault tests and of bench/charging_faults.py.

They read the server's own database directly (SQLite file or PostgreSQL
URL of the environment), never through the caller's Django settings.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import psycopg
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from devtools.servers import DaphneProcess, manage


def dev_token(user_id: str, secret: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "nbf": now, "exp": now + 3600}, secret, algorithm="HS256")


def grant(env: dict[str, str], users: list[str], grants: int, amount: int | Mapping[str, int]) -> None:
    """Users with ``grants`` grants each (so their credit_entries have that
    many rows) of ``amount``, or of ``amount[user]`` for each user."""
    amounts = [(name, amount if isinstance(amount, int) else amount[name]) for name in users]
    manage(
        env,
        "shell",
        "-c",
        "from accounts import services as accounts\n"
        "from credits import services as credits\n"
        f"for name, amount in {amounts!r}:\n"
        "    user = accounts.get_or_create_user(name)\n"
        f"    for i in range({grants}):\n"
        "        credits.grant_credits(user.pk, user.default_application_id, amount, reason=f'grant {i}',"
        " actor=credits.Actor.system())\n",
    )


def server_rows(env: dict[str, str], sql: str) -> list[tuple[Any, ...]]:
    """Rows of the server's own database (not the test database)."""
    url = env.get("DATABASE_URL")
    if url:
        with psycopg.connect(url) as conn:
            return list(conn.execute(sql).fetchall())
    with sqlite3.connect(Path(env["LEDGERCORE_VAR_DIR"]) / "db.sqlite3", timeout=20) as conn:
        return list(conn.execute(sql).fetchall())


def recv(ws: Any, timeout: float) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=timeout)))


def final_of(ws: Any, request_id: str, timeout: float) -> dict[str, Any]:
    """The last event of a request (query_completed, query_error, insufficient_credits, ...)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = recv(ws, max(deadline - time.monotonic(), 0.01))
        if frame.get("id") != request_id:
            continue
        if frame["event"] not in ("query_started", "query_progress", "query_response"):
            return frame


def hello(ws: Any) -> None:
    """connected, then the balance."""
    events = [recv(ws, 10)["event"], recv(ws, 10)["event"]]
    if events != ["connected", "credit_balance_updated"]:
        raise RuntimeError(f"unexpected greeting {events}")


def settlement_problems(env: dict[str, str]) -> list[str]:
    """Each hold against its request's query record: captured if and only if
    the query completed, released otherwise; none pending."""
    rows = server_rows(
        env,
        "SELECT h.id, h.status, r.status FROM credits_hold h "
        "LEFT JOIN queryengine_queryrecord r ON r.reference = h.reference ORDER BY h.id",
    )
    problems = []
    for hold_id, hold_status, record_status in rows:
        expected = "captured" if record_status == "completed" else "released"
        if hold_status != expected:
            problems.append(f"hold {hold_id} is {hold_status}, its query {record_status}")
    unpaid = server_rows(
        env,
        "SELECT r.id FROM queryengine_queryrecord r LEFT JOIN credits_hold h ON h.reference = r.reference "
        "WHERE r.status = 'completed' AND (h.id IS NULL OR h.status <> 'captured')",
    )
    problems.extend(f"query {qid} completed without a captured hold" for (qid,) in unpaid)
    return problems


def pending_holds(env: dict[str, str]) -> int:
    return int(server_rows(env, "SELECT count(*) FROM credits_hold WHERE status = 'pending'")[0][0])


class KillRun:
    """Clients sending charged queries one after the other, while the server
    is killed with SIGKILL at random moments and started again."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        users: list[str],
        requests: int,
        seed: int,
        between_kills: tuple[int, int] = (8, 20),
    ) -> None:
        self.env, self.log_dir, self.users, self.requests = env, log_dir, users, requests
        self.secret = env["LEDGERCORE_DEV_JWT_SECRET"]
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.sent = 0
        self.completed: set[str] = set()
        self.url = ""
        self.done = threading.Event()
        self.kills = 0
        self.between_kills = between_kills
        # Pending holds just after each kill: those the killed process owned.
        self.orphaned: list[int] = []

    def _reached(self, mark: int) -> bool:
        with self.lock:
            return self.sent >= min(mark, self.requests)

    def _take(self) -> bool:
        with self.lock:
            if self.sent >= self.requests:
                return False
            self.sent += 1
            return True

    def client(self, user: str, sqls: list[str]) -> None:
        number = 0
        while not self.done.is_set():
            try:
                with connect(f"{self.url}/ws?token={dev_token(user, self.secret)}", open_timeout=2) as ws:
                    hello(ws)
                    while self._take():
                        number += 1
                        request_id = f"{user}-{number}"
                        ws.send(
                            json.dumps({"event": "query", "data": {"sql": sqls[number % len(sqls)]}, "id": request_id})
                        )
                        reply = final_of(ws, request_id, timeout=15)
                        if reply["event"] == "query_completed":
                            with self.lock:
                                self.completed.add(reply["data"]["queryId"])
                    return
            except (WebSocketException, OSError, TimeoutError, RuntimeError):
                time.sleep(0.05)

    def run(self, sqls: list[str], wait: float = 60) -> float:
        """Returns the seconds from the last kill until no hold was pending
        (gives up ``wait`` seconds after the requests ended)."""
        server = DaphneProcess(self.env, self.log_dir / "daphne-0.log").start()
        self.url = server.url
        threads = [threading.Thread(target=self.client, args=(user, sqls), daemon=True) for user in self.users]
        for thread in threads:
            thread.start()
        last_kill = time.monotonic()
        try:
            while True:
                # Kill once the clients have sent some more requests, at a
                # random moment among them.
                with self.lock:
                    mark = self.sent + self.random.randint(*self.between_kills)
                while not self._reached(mark):
                    time.sleep(0.01)
                time.sleep(self.random.uniform(0, 0.3))
                with self.lock:
                    finished = self.sent >= self.requests
                if finished:
                    break
                server.kill()
                last_kill = time.monotonic()
                self.kills += 1
                self.orphaned.append(pending_holds(self.env))
                server = DaphneProcess(self.env, self.log_dir / f"daphne-{self.kills}.log").start()
                self.url = server.url
            for thread in threads:
                thread.join(timeout=30)
            self.done.set()
            deadline = time.monotonic() + wait
            while pending_holds(self.env) and time.monotonic() < deadline:
                time.sleep(0.2)
            return time.monotonic() - last_kill
        finally:
            self.done.set()
            server.stop()

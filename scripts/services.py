"""Checks (and on CI starts) PostgreSQL and Redis on 127.0.0.1.

Usage: services.py check|ensure. Exit 0 when both answer; ``ensure`` tries
to start whichever does not. Prints what it found.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

PG_URL = os.environ.get("LEDGERCORE_TEST_PG", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("LEDGERCORE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def postgres_answers() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping())
    except redis.RedisError:
        return False


def start_postgres() -> None:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not versions:
        print("services: no PostgreSQL cluster under /etc/postgresql", file=sys.stderr)
        return
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False)


def start_redis() -> None:
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=False,
    )


def wait(check, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    pg, rd = postgres_answers(), redis_answers()
    if mode == "ensure":
        if not pg:
            print("services: PostgreSQL does not answer; starting it")
            start_postgres()
            pg = wait(postgres_answers)
        if not rd:
            print("services: Redis does not answer; starting it")
            start_redis()
            rd = wait(redis_answers)
    print(f"services: PostgreSQL {'up' if pg else 'DOWN'} ({PG_URL}), Redis {'up' if rd else 'DOWN'} ({REDIS_URL})")
    return 0 if pg and rd else 1


if __name__ == "__main__":
    sys.exit(main())

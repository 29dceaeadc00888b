"""HTTP API requests: the project's handler (``ledgercore.http``: a
request's middleware and view in one call on its thread) against Django's
own ASGIHandler (bench/stock_django_app.py), the same daphne, database and
code otherwise, measured in one run.

Per server: ``--requests`` sequential requests of each kind (a new TCP
connection each, as the trigger of a broadcast in bench/realtime.py), then
``--concurrency`` clients at once for the same number of requests:

- ``GET /api/me``: token authentication and one read;
- ``POST /api/applications/<id>/broadcast``: authentication, the owner
  check, validation and a broadcast to an empty room;
- ``GET /healthz``: no authentication.

The servers are measured in turn, ``--rounds`` times, interleaved; medians
of the rounds are printed with the ratio project / Django (below 1 is
faster). Not a test: figures depend on the machine; see docs/benchmarks.md.

    .venv/bin/python bench/http_api.py [--stack embedded|scaled] [--requests 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import add_service_arguments, percentile
from bench.realtime import SECRET, SEED_BENCH, token
from devtools.servers import DaphneProcess, manage, server_environment

APPS = {"project": "ledgercore.asgi:application", "django": "bench.stock_django_app:application"}
FIGURES = (("p50_ms", "p50 ms, one at a time"), ("p99_ms", "p99 ms"), ("per_s", "requests/s, concurrent"))
BODY = json.dumps({"message": "bench", "data": {"marker": "x"}})


def one(port: int, method: str, path: str, bearer: str | None) -> float:
    headers = {"Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=BODY if method == "POST" else None, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status}")
    return (time.perf_counter() - started) * 1000


def measure(port: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    owner = token("bench_owner")
    kinds = {
        "GET /api/me": ("GET", "/api/me", owner),
        "POST broadcast": ("POST", "/api/applications/app_bench/broadcast", owner),
        "GET /healthz": ("GET", "/healthz", None),
    }
    for method, path, bearer in kinds.values():  # warm-up
        for _ in range(20):
            one(port, method, path, bearer)
    results = {}
    for name, (method, path, bearer) in kinds.items():
        latencies = [one(port, method, path, bearer) for _ in range(args.requests)]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, *zip(*[(port, method, path, bearer)] * args.requests, strict=True)))
        results[name] = {
            "p50_ms": statistics.median(latencies),
            "p99_ms": percentile(latencies, 99),
            "per_s": args.requests / (time.perf_counter() - started),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=["embedded", "scaled"], default="embedded")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    add_service_arguments(parser, worker=False)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in APPS}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {"dev_secret": SECRET, "LOG_LEVEL": "WARNING"}
        if args.stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcbenchhttp")
        with server_environment(Path(tmp), **kwargs) as env:
            manage(env, "shell", "-c", SEED_BENCH.format(users=1))
            for round_ in range(args.rounds):
                for name, app in APPS.items():
                    server = DaphneProcess(env, Path(tmp) / f"{name}.log", app=app).start()
                    try:
                        runs[name].append(measure(server.port, args))
                    finally:
                        server.stop()
                    print(f"  round {round_ + 1}: {name} measured", file=sys.stderr, flush=True)
    load.append(os.getloadavg()[0])
    print(f"\n== {args.stack} stack: {args.requests} requests per kind, median of {args.rounds} rounds ==")
    print(f"{'':34}{'project':>10}{'Django':>10}{'ratio':>8}")
    for kind in runs["project"][0]:
        for figure, label in FIGURES:
            ours = statistics.median(r[kind][figure] for r in runs["project"])
            theirs = statistics.median(r[kind][figure] for r in runs["django"])
            print(f"{kind + ' ' + label:34}{ours:>10.1f}{theirs:>10.1f}{ours / theirs:>8.2f}")
    print(f"1-minute load average {load[0]:.2f} at the start, {load[1]:.2f} at the end")
    print("json " + json.dumps({"stack": args.stack, "load": load, **runs}))


if __name__ == "__main__":
    main()

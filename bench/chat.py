"""Chat benchmark: time to ``chat_typing``, to the first ``chat_message``
delta and to ``chat_response`` for every question of the evaluation set
over a real WebSocket, against a ``ping`` round trip on the same connection
in the same run, and the execution accuracy of the ``builtin`` translator.

    .venv/bin/python bench/chat.py [--stack embedded|scaled|both] [--warmup 3]

Per stack, on a fresh migrated database (devtools.servers.server_environment),
the parent re-invokes this script as ``--worker STACK`` with the stack's
environment; the worker prints one ``result {...}`` line.

- **Fixture**: the demo data ``seed_demo`` puts in the fresh database is
  flushed first (on PostgreSQL in a session that sets
  ``ledgercore.ledger_purge``, as the suite's flush does): the evaluation's
  expected rows assume the chat fixture (``chat/eval/fixtures.py``) and
  nothing else. The fixture is then loaded
  for its user, ``chat-eval``.
- **Accuracy**: ``chat.eval.runner.evaluate`` with the ``builtin``
  translator, in the worker on that database, before the server starts (the
  socket run's turns would otherwise change ``query_history`` and the
  conversations). It is the scoring of ``manage.py eval_chat``: rows equal to
  the expected rows, the questions translated at the fixture's anchor time.
  The socket run cannot be scored on rows: the server translates with the
  real clock, so "the last hour" selects other rows than at the anchor;
  instead it reports how many of its statements are the one the evaluation
  ran (parameters, bound, may differ by the clock).
- **WebSocket**: a real daphne server (as ``make run``), one connection as
  ``chat-eval``; per question, one ``ping`` (baseline: time to ``pong``),
  then the question's earlier turns (if any, untimed) and the question as
  ``chat`` in a conversation of its own, with its context, one at a time.
  Times run from sending ``chat`` to the first ``chat_typing``, the first
  ``chat_message`` with ``isFinal`` false and ``chat_response``. Ratio =
  chat percentile / ping percentile. ``--warmup`` questions are asked first,
  uncounted. Throttles are raised out of the way; prices are the defaults.

Client, server, PostgreSQL and Redis share the machine; see
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import add_service_arguments, percentile  # noqa: E402
from devtools.servers import DaphneProcess, server_environment  # noqa: E402

SECRET = uuid.uuid4().hex + uuid.uuid4().hex
RESULT_PREFIX = "result "
USER = "chat-eval"
REQUEST_TIMEOUT = 60.0
STACK_LABELS = {"embedded": "SQLite, in-memory layer", "scaled": "PostgreSQL, Redis"}
FIRST_DELTA_P95_TARGET_MS = 300.0
ACCURACY_TARGET = 0.90
STAGES = (("typing_ms", "chat_typing"), ("first_delta_ms", "first delta"), ("response_ms", "chat_response"))


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values, default=float("nan")),
    }


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# --- worker: one stack, Django configured from the inherited environment ----


def accuracy(fixture: Any, questions: list[dict[str, Any]]) -> dict[str, Any]:
    from chat.eval import runner
    from chat.translators import get_translator

    started = time.perf_counter()
    report = runner.evaluate(get_translator("builtin"), fixture, questions)
    seconds = time.perf_counter() - started
    return {
        "right": sum(o.correct for o in report.outcomes),
        "total": len(report.outcomes),
        "accuracy": report.accuracy,
        "by_table": {table: list(counts) for table, counts in sorted(report.by_table().items())},
        "failures": [o.question["id"] for o in report.failures()],
        "seconds": seconds,
        "sql": {str(o.question["id"]): o.translation.sql if o.translation else "" for o in report.outcomes},
    }


async def over_websocket(
    url: str, fixture: Any, questions: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    import jwt
    import websockets

    now = int(time.time())
    token = jwt.encode(
        {"sub": USER, "iat": now, "exp": now + 7200}, os.environ["LEDGERCORE_DEV_JWT_SECRET"], algorithm="HS256"
    )
    ws = await websockets.connect(f"{url}/ws?token={token}", open_timeout=60, max_size=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert hello["event"] == "connected", hello
    counter = 0

    async def request(event: str, data: dict[str, Any], until: set[str]) -> tuple[dict[str, float], dict[str, Any]]:
        nonlocal counter
        counter += 1
        request_id = f"r{counter}"
        sent = time.perf_counter()
        await ws.send(json.dumps({"event": event, "data": data, "id": request_id}))
        marks: dict[str, float] = {}
        deadline = sent + REQUEST_TIMEOUT
        while True:
            raw = await asyncio.wait_for(ws.recv(), max(deadline - time.perf_counter(), 0.01))
            arrived = (time.perf_counter() - sent) * 1000
            frame = json.loads(raw)
            if frame.get("id") != request_id:
                continue
            name = frame["event"]
            if name == "chat_message" and not frame["data"].get("isFinal"):
                name = "delta"
            marks.setdefault(name, arrived)
            if frame["event"] in until or frame["event"].endswith("error"):
                return marks, frame

    async def ask(question: dict[str, Any], conversation_id: str) -> tuple[dict[str, float], dict[str, Any]]:
        context = fixture.substitute(question.get("context") or {})
        base: dict[str, Any] = {"conversationId": conversation_id}
        if context:
            base["context"] = context
        for earlier in fixture.substitute(question.get("history") or []):
            await request("chat", {**base, "message": earlier}, {"chat_response"})
        return await request("chat", {**base, "message": fixture.substitute(question["question"])}, {"chat_response"})

    for n, question in enumerate(questions[: args.warmup]):  # uncounted: first use of each code path
        await request("ping", {}, {"pong"})
        await ask(question, f"bench-warm-{n}")

    ping_ms: list[float] = []
    stages: dict[str, list[float]] = {key: [] for key, _ in STAGES}
    errors: list[dict[str, Any]] = []
    sql: dict[str, str] = {}
    with_sql = 0
    for question in questions:
        marks, _ = await request("ping", {}, {"pong"})
        ping_ms.append(marks["pong"])
        marks, frame = await ask(question, f"bench-{question['id']}")
        if frame["event"] != "chat_response" or "delta" not in marks or "chat_typing" not in marks:
            errors.append({"id": question["id"], "frame": frame})
            continue
        stages["typing_ms"].append(marks["chat_typing"])
        stages["first_delta_ms"].append(marks["delta"])
        stages["response_ms"].append(marks["chat_response"])
        sql[str(question["id"])] = frame["data"].get("sql", "")
        with_sql += "sql" in frame["data"]
    await ws.close()
    return {
        "ping_ms": summary(ping_ms),
        **{key: summary(values) for key, values in stages.items()},
        "errors": errors,
        "with_sql": with_sql,
        "sql": sql,
    }


def worker(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ledgercore.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    from chat.eval import fixtures, runner

    log(f"{stack}: flushing the demo data, loading the chat fixture")
    if connection.vendor == "postgresql":
        # The ledger's trigger refuses TRUNCATE unless the session declares a purge.
        with connection.cursor() as cursor:
            cursor.execute("SET ledgercore.ledger_purge = 'on'")
    call_command("flush", interactive=False, verbosity=0)
    connections.close_all()
    fixture = fixtures.load(user_id=USER)
    questions = runner.load_questions()
    log(f"{stack}: accuracy of builtin over {len(questions)} questions, in process")
    results: dict[str, Any] = {"accuracy": accuracy(fixture, questions)}
    connections.close_all()

    log(f"{stack}: {len(questions)} questions over the WebSocket")
    server = DaphneProcess(dict(os.environ), Path(os.environ["LEDGERCORE_VAR_DIR"]) / "daphne.log").start()
    try:
        results["websocket"] = asyncio.run(over_websocket(server.url, fixture, questions, args))
    except Exception:
        print("--- server log ---", *server.logs().splitlines()[-60:], sep="\n", file=sys.stderr)
        raise
    finally:
        server.stop()
    evaluated, asked = results["accuracy"].pop("sql"), results["websocket"].pop("sql")
    results["websocket"]["same_sql"] = sum(evaluated.get(key) == value for key, value in asked.items())
    return results


# --- parent: environments, worker processes, report --------------------------


def run_stack(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {
            "dev_secret": SECRET,
            "LOG_LEVEL": "WARNING",
            "LEDGERCORE_THROTTLE_RATES": "connection=100000/s,user=100000/s,expensive=100000/min",
            "LEDGERCORE_CHAT_TRANSLATOR": "builtin",
        }
        if stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcbench")
        log(f"{stack}: preparing a fresh database")
        with server_environment(Path(tmp), **kwargs) as env:
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", stack, "--warmup", str(args.warmup)]
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
            if done.returncode != 0 or not lines:
                raise RuntimeError(f"{stack} worker failed (exit {done.returncode}):\n{done.stdout}")
            return json.loads(lines[-1][len(RESULT_PREFIX) :])


def report(stack: str, r: dict[str, Any]) -> None:
    ws, acc = r["websocket"], r["accuracy"]
    ping = ws["ping_ms"]
    print(f"\n== {stack} stack ({STACK_LABELS[stack]}) ==")
    print(f"{'over the WebSocket, from sending':34}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}", end="")
    print(f"{'ratio p50':>11}{'ratio p95':>11}")
    print(f"{'baseline: ping -> pong':34}{ping['n']:>5}{ping['p50']:>10.1f}{ping['p95']:>10.1f}{ping['max']:>10.1f}")
    for key, label in STAGES:
        s = ws[key]
        print(
            f"{f'chat -> {label}':34}{s['n']:>5}{s['p50']:>10.1f}{s['p95']:>10.1f}{s['max']:>10.1f}"
            f"{s['p50'] / ping['p50']:>11.1f}{s['p95'] / ping['p95']:>11.1f}"
        )
    delta_p95 = ws["first_delta_ms"]["p95"]
    delta_met = "met" if delta_p95 <= FIRST_DELTA_P95_TARGET_MS else "MISSED"
    acc_met = "met" if acc["accuracy"] >= ACCURACY_TARGET else "MISSED"
    print(f"target first delta p95 <= {FIRST_DELTA_P95_TARGET_MS:.0f} ms: {delta_met} ({delta_p95:.1f} ms)")
    print(
        f"execution accuracy of builtin: {acc['right']}/{acc['total']} = {100 * acc['accuracy']:.1f}% "
        f"(target {100 * ACCURACY_TARGET:.0f}%: {acc_met}; evaluated in {acc['seconds']:.1f} s)"
    )
    print("  by table: " + ", ".join(f"{t} {right}/{count}" for t, (right, count) in acc["by_table"].items()))
    notes = [
        f"answered with SQL {ws['with_sql']}",
        f"same statement as the evaluation {ws['same_sql']}/{ws['response_ms']['n']}",
    ]
    if acc["failures"]:
        notes.append(f"wrong: #{', #'.join(map(str, acc['failures']))}")
    if ws["errors"]:
        notes.append(f"errors {len(ws['errors'])}: {ws['errors'][0]}")
    print("  " + "; ".join(notes))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", choices=["embedded", "scaled", "both"], default="both")
    p.add_argument("--warmup", type=int, default=3, help="uncounted questions asked first")
    add_service_arguments(p)
    return p


def main() -> None:
    args = parser().parse_args()
    if args.worker:
        results = worker(args.worker, args)
        print(RESULT_PREFIX + json.dumps(results), flush=True)
        return
    stacks = ["embedded", "scaled"] if args.stack == "both" else [args.stack]
    print(
        "bench/chat.py: the chat evaluation set (chat/eval/questions.json) over one WebSocket, one question "
        f"at a time, builtin translator, {args.warmup} warm-up questions; baseline ping on the same connection"
    )
    everything: dict[str, Any] = {}
    for stack in stacks:
        everything[stack] = run_stack(stack, args)
        report(stack, everything[stack])
    targets = {"first_delta_p95_ms": FIRST_DELTA_P95_TARGET_MS, "accuracy": ACCURACY_TARGET}
    print("json " + json.dumps({"warmup": args.warmup, "targets": targets, "stacks": everything}))


if __name__ == "__main__":
    main()

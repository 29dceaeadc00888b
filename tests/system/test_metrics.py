"""Prometheus metrics (realtime.metrics) over real server processes: two
daphne processes sharing a metrics directory are summed by a scrape of
either; a killed process stops counting in the live gauges; the scrape
token is enforced."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from devtools.servers import DaphneProcess
from tests.stacks import migrated_stack_env, scaled_stack
from tests.wsclient import dev_token


def scrape(server: DaphneProcess, token: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    request = urllib.request.Request(f"{server.http}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def hello(ws) -> None:
    assert json.loads(ws.recv(timeout=15))["event"] == "connected"
    assert json.loads(ws.recv(timeout=15))["event"] == "credit_balance_updated"


def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_two_processes_are_summed_and_a_killed_one_stops_counting(tmp_path):
    with migrated_stack_env(
        tmp_path, scaled_stack(), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"), LOG_LEVEL="WARNING"
    ) as env:
        (tmp_path / "metrics").mkdir(exist_ok=True)
        a = DaphneProcess(env, tmp_path / "a.log").start()
        b = DaphneProcess(env, tmp_path / "b.log").start()
        try:
            with (
                connect(f"{a.url}/ws?token={dev_token('metrics_a')}") as on_a,
                connect(f"{b.url}/ws?token={dev_token('metrics_b1')}") as on_b1,
                connect(f"{b.url}/ws?token={dev_token('metrics_b2')}") as on_b2,
            ):
                for ws in (on_a, on_b1, on_b2):
                    hello(ws)
                for ws in (on_a, on_b1):
                    for i in range(3):
                        ws.send(json.dumps({"event": "ping", "id": f"p{i}"}))
                        assert json.loads(ws.recv(timeout=10))["event"] == "pong"
                on_a.send(json.dumps({"event": "no_such_event", "id": "x"}))
                assert json.loads(on_a.recv(timeout=10))["data"]["code"] == "NOT_FOUND"

                samples = scrape(a)
                assert value(samples, "ledgercore_connections_open") == 3  # both processes
                assert value(samples, "ledgercore_events_in_total", event="ping") == 6
                assert value(samples, "ledgercore_events_in_total", event="unknown") == 1
                assert value(samples, "ledgercore_events_out_total", event="pong") == 6
                assert value(samples, "ledgercore_events_out_total", event="connected") == 3
                assert value(samples, "ledgercore_errors_total", code="NOT_FOUND") == 1
                # Read from the database at scrape time.
                assert ("ledgercore_outbox_pending", ()) in samples
                assert ("ledgercore_ledger_entries", ()) in samples
                assert ("ledgercore_analysis_jobs", (("status", "queued"),)) in samples
                # The same figures from the other process.
                assert value(scrape(b), "ledgercore_connections_open") == 3

                b.kill()
                # A's sampler marks B dead within a few seconds: its
                # connections no longer count; its counters keep their totals.
                until(lambda: value(scrape(a), "ledgercore_connections_open") == 1, 30, "the dead process to be swept")
                assert value(scrape(a), "ledgercore_events_in_total", event="ping") == 6
        finally:
            a.stop()
            b.stop()


def test_the_scrape_token_is_required_when_configured(tmp_path):
    with migrated_stack_env(
        tmp_path,
        scaled_stack(),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        LEDGERCORE_METRICS_TOKEN="scrape-secret",
        LOG_LEVEL="WARNING",
    ) as env:
        (tmp_path / "metrics").mkdir(exist_ok=True)
        server = DaphneProcess(env, tmp_path / "d.log").start()
        try:
            for token in (None, "wrong"):
                try:
                    scrape(server, token)
                except urllib.error.HTTPError as refused:
                    assert refused.code == 401
                else:
                    raise AssertionError(f"a scrape with token {token!r} was served")
            assert ("ledgercore_connections_open", ()) in scrape(server, "scrape-secret")
        finally:
            server.stop()
        assert "scrape-secret" not in server.logs()

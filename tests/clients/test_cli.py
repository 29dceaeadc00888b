"""The `ledgercore` command (clients/python) run as a subprocess against a real server process."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import QUERY_PRICE, post_trade

LEDGERCORE = str(Path(sys.executable).with_name("ledgercore"))
SUBCOMMANDS = ["login", "candles", "watch", "query", "analyse", "balance", "chat"]


class Lines:
    """A subprocess's stdout, a line at a time, with a timeout (a reader thread)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.queue.put(line)

    def next(self, timeout: float = 60) -> str:
        return self.queue.get(timeout=timeout)


def run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LEDGERCORE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def cli_env(server, token, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERCORE_")}
    env.update({"XDG_CONFIG_HOME": str(tmp_path / "config"), "LEDGERCORE_URL": server.http, "LEDGERCORE_TOKEN": token})
    return env


def test_candles_as_json_and_csv(cli_env):
    now = int(time.time() * 1000)
    window = ["--resolution", "1h", "--from", str(now - 24 * 3600 * 1000), "--to", str(now)]
    as_json = run("candles", "ETH-USD", *window, "--format", "json", env=cli_env)
    assert as_json.returncode == 0, as_json.stderr
    candles = json.loads(as_json.stdout)
    assert candles and set(candles[0]) == {"timestamp", "open", "high", "low", "close", "volume", "trades"}
    assert all(now - 25 * 3600 * 1000 <= c["timestamp"] < now for c in candles)
    as_csv = run("candles", "ETH-USD", *window, "--format", "csv", env=cli_env)
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0] == ["timestamp", "open", "high", "low", "close", "volume", "trades"]
    assert [int(row[0]) for row in rows[1:]] == [c["timestamp"] for c in candles]
    assert [float(row[4]) for row in rows[1:]] == [c["close"] for c in candles]


def test_candles_table_uses_iso_times_and_an_unknown_symbol_exits_with_its_code(cli_env):
    table = run("candles", "BTC-USD", "-r", "1h", "--window", "6h", env=cli_env)
    assert table.returncode == 0, table.stderr
    assert "BTC-USD 1h" in table.stdout and "close" in table.stdout
    unknown = run("candles", "NOPE-USD", env=cli_env)
    assert unknown.returncode == 2
    assert "NOT_FOUND" in unknown.stderr


def test_query_as_json_and_a_refused_statement(cli_env):
    sql = "SELECT symbol, count(*) AS n FROM trades WHERE symbol LIKE '%-USD' GROUP BY symbol ORDER BY symbol"
    result = run("query", sql, "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["symbol"] for row in rows] == ["BTC-USD", "ETH-USD"]
    assert all(row["n"] > 0 for row in rows)
    assert "2 rows" in result.stderr
    refused = run("query", "DROP TABLE trades", "--csv", env=cli_env)
    assert refused.returncode == 2 and "VALIDATION_FAILED" in refused.stderr


def test_balance_and_login_store_the_server_and_token_privately(cli_env, tmp_path):
    balance = run("balance", "--json", env=cli_env)
    assert balance.returncode == 0, balance.stderr
    payload = json.loads(balance.stdout)
    assert payload["applicationId"] == "app_demo" and isinstance(payload["newBalance"], int)

    login = run("login", env=cli_env)
    assert login.returncode == 0, login.stderr
    stored = tmp_path / "config" / "ledgercore" / "config.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text()) == {"url": cli_env["LEDGERCORE_URL"], "token": cli_env["LEDGERCORE_TOKEN"]}
    # Later commands need neither the options nor the environment.
    bare = {k: v for k, v in cli_env.items() if k not in {"LEDGERCORE_URL", "LEDGERCORE_TOKEN"}}
    again = run("balance", "--json", env=bare)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["applicationId"] == "app_demo"


def test_every_command_has_help_with_an_example(cli_env):
    for name in SUBCOMMANDS:
        result = run(name, "--help", env=cli_env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "example:" in result.stdout and f"ledgercore {name}" in result.stdout, name


def test_chat_answers_and_analyse_prints_the_score(cli_env):
    chat = run("chat", "how many trades of ETH-USD in the last 24 hours?", "--sql", env=cli_env)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip()
    assert "SELECT" in chat.stderr.upper()
    analysis = run("analyse", "0x000000000000000000000000000000000000dEaD", "--hops", "1", "--json", env=cli_env)
    assert analysis.returncode == 0, analysis.stderr
    result = json.loads(analysis.stdout)
    assert result["address"].lower() == "0x000000000000000000000000000000000000dead"
    assert result["riskLevel"] in {"low", "medium", "high", "severe"}
    table = run("analyse", "0x000000000000000000000000000000000000dEaD", "--hops", "1", env=cli_env)
    assert table.returncode == 0, table.stderr
    assert f"risk score {result['riskScore']} ({result['riskLevel']})" in table.stdout


def test_watch_prints_the_live_candle_as_trades_arrive(server, cli_env):
    watcher = subprocess.Popen(
        [LEDGERCORE, "watch", "BTC-USD", "-r", "1s", "--count", "1"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(watcher)
        # The history line comes once the market room is joined.
        first = lines.next()
        assert "BTC-USD close" in first and "(history)" in first, (first, watcher.stderr)
        price = "71234.5"
        for n in range(60):
            post_trade(server, 9_000_000 + n, price)
            try:
                watcher.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                continue
        assert watcher.wait(timeout=30) == 0
        live = lines.next()
        # The demo feed's trades or the one posted here: a live candle line.
        assert re.fullmatch(r"\S+ \S+ BTC-USD O [\d.]+ H [\d.]+ L [\d.]+ C [\d.]+ V [\d.e-]+ \(\d+ trades\)\n", live), (
            live
        )
    finally:
        watcher.kill()
        watcher.wait()


def test_balance_watch_prints_each_change(cli_env):
    watcher = subprocess.Popen(
        [LEDGERCORE, "balance", "--watch", "--json"], env=cli_env, stdout=subprocess.PIPE, text=True
    )
    try:
        lines = Lines(watcher)
        before = json.loads(lines.next())["newBalance"]
        charged = run("query", "SELECT 1 AS one", "--json", env=cli_env)
        assert charged.returncode == 0, charged.stderr
        # The hold, then its capture: balances until the query's price is taken.
        while (after := json.loads(lines.next())["newBalance"]) != before - QUERY_PRICE:
            assert after >= before - QUERY_PRICE, (before, after)
    finally:
        watcher.terminate()
        watcher.wait(timeout=30)

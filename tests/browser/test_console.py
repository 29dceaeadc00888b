"""The browser console at ``/`` in headless Chromium against a real server
process (demo data, the live demo feed): sign in with a development token,
watch the chart move, stream and cancel a query, ask the chat, run an
analysis, see the balance change. Any error in the browser's log fails."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from devtools.servers import DaphneProcess, DbWorkerProcess, manage
from tests.browser.browser import chromium_paths, console_errors, headless_chromium, screenshots_dir
from tests.stacks import scaled_stack, stack_env
from tests.wsclient import dev_token

WAIT = 60  # seconds: generous, for a loaded 2-core machine
USER = "demo_user"  # a member of the demo application, with credits and prices (seed_demo)
APP = "app_demo"
SLOW_SQL = "SELECT count(*) FROM trades a, trades b, trades c, trades d"
ANALYSED = """
from compliance.models import AddressLabel, Transfer
ofac = list(AddressLabel.objects.filter(source__startswith="ofac:", address__chain__code="ethereum")
            .values_list("address_id", flat=True))
near = Transfer.objects.filter(from_address_id__in=ofac, to_address__chain__code="ethereum")
any_ = Transfer.objects.filter(to_address__chain__code="ethereum")
print((near.first() or any_.first()).to_address.address)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    chromium_paths()  # skip (or fail on CI) before the slow set-up
    tmp = tmp_path_factory.mktemp("console")
    with stack_env(
        tmp,
        scaled_stack(),
        LEDGERCORE_MARKET_DEMO_FEED="true",
        LEDGERCORE_DRAIN_SECONDS="3",
        LEDGERCORE_THROTTLE_RATES="connection=1000/s,user=1000/s,expensive=100/s",
    ) as env:
        process = DaphneProcess(dict(env), tmp / "daphne.log")
        process.env["LEDGERCORE_ALLOWED_ORIGINS"] = process.http
        # On PostgreSQL analyses are Django tasks: a db_worker runs them.
        worker = DbWorkerProcess(env, tmp / "worker.log").start() if scaled_stack() else None
        process.start()
        try:
            yield process
        finally:
            process.stop()
            if worker is not None:
                worker.terminate(10)


@pytest.fixture(scope="module")
def analysed_address(server: DaphneProcess) -> str:
    return manage(server.env, "shell", "-c", ANALYSED).strip().splitlines()[-1]


class Page:
    """The signed-in console page and the browser errors seen so far."""

    def __init__(self, driver: Any, downloads: Path) -> None:
        self.driver = driver
        self.downloads = downloads
        self.errors: list[str] = []

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return str(self.find(css).text)

    def until(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = condition()
            except Exception:  # noqa: BLE001 - element not there yet, stale: try again
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; page status {self.text('#status')!r}")
            time.sleep(0.2)

    def set_value(self, css: str, value: str) -> None:
        self.driver.execute_script("arguments[0].value = arguments[1];", self.find(css), value)

    def check_log(self, expected: str | None = None) -> None:
        """No error in the browser's log (but ``expected`` ones, e.g. the failed
        connection attempts while the server is down)."""
        self.errors += [e for e in console_errors(self.driver) if expected is None or expected not in e]
        assert self.errors == []

    @contextlib.contextmanager
    def token_hidden(self) -> Iterator[None]:
        """No screenshot shows the token: the field is blanked meanwhile."""
        token = self.find("#token").get_attribute("value")
        self.set_value("#token", "")
        try:
            yield
        finally:
            self.set_value("#token", token)

    def full_page(self, name: str) -> None:
        """The whole page (the window made as tall as it for the shot),
        without the token or a passing notice."""
        self.driver.execute_script("document.getElementById('notice').hidden = true; window.scrollTo(0, 0);")
        size = self.driver.get_window_size()
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        chrome = size["height"] - self.driver.execute_script("return window.innerHeight")
        with self.token_hidden():
            try:
                self.driver.set_window_size(size["width"], height + chrome)
                time.sleep(0.5)  # the chart follows the new size on its next frame
                assert self.driver.save_screenshot(str(screenshots_dir() / name))
            finally:
                self.driver.set_window_size(size["width"], size["height"])

    def screenshot(self, panel: str, name: str | None = None) -> None:
        self.driver.execute_script("arguments[0].scrollIntoView();", self.find(f"#{panel}"))
        with self.token_hidden():
            assert self.find(f"#{panel}").screenshot(str(screenshots_dir() / (name or f"console-{panel}.png")))


@pytest.fixture(scope="module")
def page(server: DaphneProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    downloads = tmp_path_factory.mktemp("downloads")
    with headless_chromium(downloads) as driver:
        driver.get(f"{server.http}/")
        yield Page(driver, downloads)


def test_signs_in_with_a_pasted_token_and_shows_the_balance(page: Page) -> None:
    page.set_value("#token", dev_token(USER, APP))
    page.find("#signin").click()
    page.until(lambda: page.find("#status").get_attribute("data-state") == "online", "the connection")
    assert page.text("#who") == f"{USER} · {APP}"
    page.until(lambda: page.text("#balance").isdigit(), "the balance")
    page.until(lambda: page.find("#credit-entries tbody tr"), "the ledger entries")
    page.until(lambda: page.find(f'#room-list li[data-room="application:{APP}"] .count'), "the application room")
    assert page.driver.execute_script("return sessionStorage.getItem('ledgercore.console.token')")
    page.screenshot("signin-panel")
    page.check_log()


def test_the_chart_loads_history_and_moves_with_the_demo_feed(page: Page) -> None:
    page.until(lambda: int(page.text("#bar-count")) > 0, "the chart's first bars")
    assert "decimals" in page.text("#chart-info")
    first = page.text("#last-bar")
    page.until(lambda: page.text("#last-bar") != first, "a live update of the chart")
    bars = int(page.text("#bar-count"))
    page.until(lambda: int(page.text("#bar-count")) > bars, "a new bar", timeout=90)
    page.screenshot("chart-panel")
    # Another market and resolution: its own history, at its own precision.
    from selenium.webdriver.support.select import Select

    Select(page.find("#resolution")).select_by_visible_text("1m")
    Select(page.find("#market")).select_by_visible_text("XRP-ETH")
    page.until(lambda: page.text("#chart-info").startswith("XRP-ETH 1m · "), "the XRP-ETH chart")
    assert int(page.text("#chart-info").split(" · ")[1].split()[0]) >= 6  # decimals
    page.until(lambda: int(page.text("#bar-count")) > 0, "the XRP-ETH bars")
    Select(page.find("#market")).select_by_visible_text("BTC-USD")
    Select(page.find("#resolution")).select_by_visible_text("1s")
    page.until(lambda: page.text("#chart-info").startswith("BTC-USD 1s · "), "the BTC-USD chart again")
    page.check_log()


def test_a_sub_second_chart_joins_history_to_live_with_no_gap_and_no_duplicate(
    page: Page, server: DaphneProcess
) -> None:
    """250 ms candles of the replayed XRP-ETH feed: the bars the chart holds
    (its initial data, then live updates) are exactly the server's stored
    candles of that span, bucket for bucket, across the join."""
    from selenium.webdriver.support.select import Select

    resolution, size = "250ms", 250
    labels = [o.text for o in Select(page.find("#resolution")).options]
    assert labels[:4] == ["100ms", "250ms", "500ms", "1s"] and labels[-1] == "1d"
    Select(page.find("#market")).select_by_visible_text("XRP-ETH")
    Select(page.find("#resolution")).select_by_visible_text(resolution)
    page.until(lambda: page.text("#chart-info").startswith(f"XRP-ETH {resolution} · "), "the 250ms chart")
    joined = page.until(lambda: page.driver.execute_script("return ledgercoreConsole.chart.joinedAt"), "its history")

    def bars() -> list[list[float]]:
        script = "return ledgercoreConsole.chart.series.data().map(b => [b.time, b.open, b.high, b.low, b.close]);"
        return list(page.driver.execute_script(script))

    # Some live bars after the join, then at least one after those (so that
    # every bar but the last is final).
    page.until(lambda: sum(bar[0] > joined for bar in bars()) >= 8, "live 250ms bars after the history")
    assert page.text("#last-bar").split(" close ")[0].endswith(" UTC")  # shown with milliseconds
    assert "." in page.text("#last-bar").split(" close ")[0]
    chart = bars()
    times = [bar[0] for bar in chart]
    assert times == sorted(set(times)), "a duplicate or out-of-order bar"
    assert all(t % size == 0 for t in times)
    assert times[0] < joined < times[-1]
    final = chart[:-1]  # the last one may still be forming
    query = f"symbol=XRP-ETH&resolution={resolution}&from={final[0][0]}&to={final[-1][0] + size}"
    request = urllib.request.Request(
        f"{server.http}/api/market/candles?{query}", headers={"Authorization": f"Bearer {dev_token(USER, APP)}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        stored = json.load(response)["candles"]
    assert [[c["timestamp"], c["open"], c["high"], c["low"], c["close"]] for c in stored] == final
    page.screenshot("chart-panel", "console-chart-250ms.png")
    Select(page.find("#market")).select_by_visible_text("BTC-USD")
    Select(page.find("#resolution")).select_by_visible_text("1s")
    page.until(lambda: page.text("#chart-info").startswith("BTC-USD 1s · "), "the BTC-USD chart again")
    page.check_log()


def test_a_query_streams_rows_downloads_csv_and_a_slow_one_cancels(page: Page) -> None:
    page.set_value("#sql", "SELECT venue, symbol, price FROM trades LIMIT 300")
    page.find("#run-query").click()
    page.until(lambda: page.text("#query-status").startswith("completed: 300 rows"), "the query to complete")
    assert len(page.driver.find_elements("css selector", "#query-table tbody tr")) == 300
    assert [th.text for th in page.driver.find_elements("css selector", "#query-table thead th")] == [
        "venue",
        "symbol",
        "price",
    ]
    page.find("#csv-query").click()
    csv = page.downloads / "query.csv"
    page.until(lambda: csv.exists() and csv.read_text().count("\n") == 301, "the CSV download")
    assert csv.read_text().splitlines()[0] == "venue,symbol,price"
    page.screenshot("query-panel")

    page.set_value("#sql", SLOW_SQL)
    page.find("#run-query").click()
    page.until(lambda: page.text("#query-status").startswith("running"), "the slow query to start")
    page.find("#cancel-query").click()
    page.until(lambda: page.text("#query-status") == "cancelled", "the cancellation")
    assert page.find("#run-query").is_enabled()
    page.check_log()


def test_the_chat_streams_an_answer_with_its_sql(page: Page) -> None:
    page.set_value("#chat-input", "How many trades of BTC-USD in the last hour?")
    page.find("#chat-send").click()
    page.until(lambda: page.find(".chat-answer.done"), "the chat answer")
    answer = page.text(".chat-answer .chat-text")
    assert "BTC-USD" in answer
    assert "SELECT" in page.text(".chat-answer .chat-sql").upper()
    page.screenshot("chat-panel")
    page.check_log()


def test_an_analysis_completes_with_its_score(page: Page, analysed_address: str) -> None:
    page.set_value("#analysis-address", "0x1234")  # refused: validation_error with the request's id
    page.find("#analysis-start").click()
    page.until(lambda: page.text("#analysis-stage").startswith("failed: Invalid request: address"), "the refusal")
    assert page.find("#analysis-start").is_enabled()
    page.set_value("#analysis-address", analysed_address)
    page.find("#analysis-start").click()
    page.until(lambda: page.text("#analysis-stage").startswith("completed"), "the analysis", timeout=120)
    score = int(page.text("#risk-score"))
    assert 0 <= score <= 100
    assert page.find("#sanctions-hits")
    contributions = [
        int(td.text) for td in page.driver.find_elements("css selector", ".signals tbody tr td:first-child")
    ]
    assert sum(contributions) == score
    assert page.driver.execute_script("return document.getElementById('analysis-progress').value") == 100
    page.screenshot("compliance-panel")
    page.check_log()


def test_the_balance_follows_the_charges(page: Page) -> None:
    before = int(page.text("#balance"))
    page.set_value("#sql", "SELECT 1 AS one")
    page.find("#run-query").click()
    page.until(lambda: int(page.text("#balance")) < before, "the balance to go down after a query")
    page.until(lambda: page.find("#credit-entries tbody tr td:nth-child(3)").text == "query", "the query's entry")
    page.screenshot("credits-panel")
    page.full_page("console.png")  # every panel, after a query, a chat answer and an analysis
    page.check_log()


def test_rooms_show_a_teammate_joining_and_leaving(page: Page, server: DaphneProcess) -> None:
    room = f"application:{APP}"
    count = f'#room-list li[data-room="{room}"] .count'
    before = int(page.text(count))
    with connect(f"{server.url}/ws?token={dev_token('demo_teammate', APP)}") as teammate:
        teammate.send(json.dumps({"event": "subscribe", "data": {"room": room}, "id": "s"}))
        page.until(lambda: f"demo_teammate joined {room}" in page.text("#room-events"), "the join")
        assert int(page.text(count)) == before + 1
        page.screenshot("rooms-panel")
    page.until(lambda: f"demo_teammate left {room}" in page.text("#room-events"), "the leave")
    assert int(page.text(count)) == before
    page.check_log()


def test_reconnects_after_a_server_restart_and_resubscribes(page: Page, server: DaphneProcess) -> None:
    page.check_log()
    last = page.text("#last-bar")
    server.stop()  # drains: the console is closed with 1001
    page.until(lambda: page.find("#status").get_attribute("data-state") == "reconnecting", "the reconnecting state")
    assert "reconnecting" in page.text("#notice")
    server.start()  # the same port
    page.until(lambda: page.find("#status").get_attribute("data-state") == "online", "the reconnection", timeout=90)
    # The Redis history outlives the process: the personal room is recovered
    # from its offset; the embedded server's history went with it.
    recovered = page.find("#status").get_attribute("data-recovered")
    assert recovered == ("true" if scaled_stack() else "false")
    page.until(lambda: page.find(f'#room-list li[data-room="application:{APP}"] .count'), "the application room")
    page.until(lambda: page.text("#last-bar") not in ("none", last), "the chart after the reconnection", timeout=90)
    page.check_log(expected=f"WebSocket connection to '{server.url}/ws?")

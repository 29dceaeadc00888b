"""Slow consumers on a real daphne process (realtime.backpressure): a client
that stops reading in a busy room is closed 4008 and leaves its rooms, the
server's memory stays bounded and the readers miss nothing; a lagging live
chart subscriber gets the latest candles, never an older after a newer."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from devtools.rawws import ConnectionGone, RawWebSocket
from devtools.servers import DaphneProcess, manage
from tests.stacks import scaled_stack, stack_env
from tests.wsclient import dev_token

APP = "app_slow"
ROOM = f"application:{APP}"
# The demo market data (the live chart's replay) and the users; not the
# rest of seed_demo (its compliance graph takes most of its time).
SEED = """
from accounts import services
from accounts.models import Application
from marketdata.demo import seed_market_data
seed_market_data()
app, _ = Application.objects.get_or_create(id="{app}", defaults={{"name": "slow"}})
for name in {names!r}:
    services.add_member(app, services.get_or_create_user(name))
"""
CLOSE_REASON = "slow consumer: send buffer exceeded"
GRACE = 4


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """One migrated, seeded database for the module's server processes."""
    names = ["reader0", "reader1", "slow_a", "slow_b", "late"]
    with stack_env(
        tmp_path_factory.mktemp("slow"),
        scaled_stack(),
        DEVTOOLS_SEED_DEMO="0",
        LEDGERCORE_THROTTLE_RATES="connection=10000/s,user=10000/s",
    ) as env:
        manage(env, "shell", "-c", SEED.format(app=APP, names=names))
        yield env


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Reader(threading.Thread):
    """Reads everything; records broadcast sequence numbers and who left."""

    def __init__(self, url: str, user: str) -> None:
        super().__init__(daemon=True)
        self.ws = connect(f"{url}/ws?token={dev_token(user)}", max_size=None)
        self.ws.send(json.dumps({"event": "subscribe", "data": {"room": ROOM}, "id": "s"}))
        self.seqs: list[int] = []
        # The publisher's count of numbers it skipped (it jumps ahead when it
        # falls more than a second behind its rate), with each frame.
        self.skipped: list[int] = []
        self.left: list[str] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    frame = json.loads(self.ws.recv(timeout=0.5))
                except TimeoutError:
                    continue
                if frame["event"] == "application_broadcast":
                    self.seqs.append(frame["data"]["seq"])
                    self.skipped.append(frame["data"]["skipped"])
                elif frame["event"] == "user_left_room":
                    self.left.append(frame["data"]["userId"])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def slow_client(server: DaphneProcess, user: str, rooms: list[str], rcvbuf: int = 4096) -> RawWebSocket:
    ws = RawWebSocket("127.0.0.1", server.port, f"/ws?token={dev_token(user)}", rcvbuf=rcvbuf)
    for n, room in enumerate(rooms):
        ws.send_event("subscribe", {"room": room}, f"s{n}")
        assert ws.reply(f"s{n}")["event"] == "subscribed"
    return ws


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_client_that_stops_reading_is_closed_4008_and_leaves_its_room_while_readers_miss_nothing(
    environment, tmp_path
):
    """400 broadcasts/s of ~4 KiB (1.6 MB/s to each subscriber: without a
    bound, a client that does not read holds megabytes of server memory
    within seconds once its kernel buffer is full). Two readers and two raw
    clients that subscribe and stop reading; limits 256 KiB / 1,024 frames.
    Both slow clients are closed: one resumes reading and gets everything
    buffered for it, then close 4008 with the documented reason; the other
    never reads and its TCP connection is aborted after the grace period.
    The server's RSS stays within 40 MiB of its level before they came;
    both leave the room (user_left_room once each, and a new subscriber
    counts the readers only); the readers got every broadcast, in order."""
    env = {
        **environment,
        "LEDGERCORE_SEND_BUFFER_BYTES": str(256 * 1024),
        "LEDGERCORE_SEND_BUFFER_FRAMES": "1024",
        "LEDGERCORE_SLOW_CLOSE_GRACE_SECONDS": str(GRACE),
        "BENCH_PUBLISH_RATE": "400",
        "BENCH_PUBLISH_ROOM": ROOM,
        "BENCH_PUBLISH_PAD": "4000",
        "LOG_LEVEL": "INFO",
    }
    server = DaphneProcess(env, tmp_path / "daphne.log", app="devtools.publisher_app:application").start()
    readers: list[Reader] = []
    try:
        assert server.process is not None
        readers = [Reader(server.url, f"reader{i}") for i in range(2)]
        for reader in readers:
            reader.start()
        wait_for(lambda: all(len(r.seqs) > 200 for r in readers), 30, "the readers to receive broadcasts")
        before = rss_mib(server.process.pid)
        slow = {name: slow_client(server, name, [ROOM]) for name in ("slow_a", "slow_b")}
        peak = before
        deadline = time.monotonic() + 30
        while server.logs().count("closing slow consumer") < 2:
            peak = max(peak, rss_mib(server.process.pid))
            assert time.monotonic() < deadline, "the slow clients were not closed"
            time.sleep(0.1)
        closed_at = time.monotonic()
        received_at_close = [len(r.seqs) for r in readers]
        # Client A was only slow: it reads what was buffered, then the close frame.
        code, reason, frames = slow["slow_a"].read_until_close(timeout=20)
        assert (code, reason) == (4008, CLOSE_REASON)
        assert frames > 0
        # Client B never reads: after the grace period its connection is aborted.
        time.sleep(max(0.0, closed_at + GRACE + 1.5 - time.monotonic()))
        with_b: list[str] = []
        try:
            while True:
                with_b.append(json.dumps(slow["slow_b"].recv_event(timeout=5))[:40])
        except ConnectionGone as gone:
            assert "end of stream" in str(gone) or "reset" in str(gone).lower() or "4008" in str(gone), gone
        for name in ("slow_a", "slow_b"):
            slow[name].close()
        for _ in range(20):
            peak = max(peak, rss_mib(server.process.pid))
            time.sleep(0.1)
        assert peak - before < 40, f"server RSS grew by {peak - before:.1f} MiB"
        # Presence: both left, once each; a newcomer counts the readers and itself.
        wait_for(lambda: all(sorted(r.left) == ["slow_a", "slow_b"] for r in readers), 10, "user_left_room")
        late = connect(f"{server.url}/ws?token={dev_token('late')}")
        late.send(json.dumps({"event": "subscribe", "data": {"room": ROOM}, "id": "s"}))
        while (reply := json.loads(late.recv(timeout=10)))["event"] != "subscribed":
            pass
        assert reply["data"]["subscriberCount"] == 3
        late.close()
        time.sleep(1)
        for reader, at_close in zip(readers, received_at_close, strict=True):
            reader.stop.set()
            reader.join(5)
            assert reader.error is None, reader.error
            # The readers kept receiving after the slow clients were closed
            # (the grace period and the newcomer take seconds at 400/s).
            assert len(reader.seqs) > at_close + 100, (at_close, len(reader.seqs))
            assert sorted(name for name in reader.left if name != "late") == ["slow_a", "slow_b"]
            # Every broadcast, in order, from its first to its last: each
            # step between two frames is one number, plus what the publisher
            # says it skipped in between (never published).
            steps = [
                (b - a) - (skip_b - skip_a)
                for a, b, skip_a, skip_b in zip(
                    reader.seqs, reader.seqs[1:], reader.skipped, reader.skipped[1:], strict=False
                )
            ]
            assert set(steps) == {1}, [
                (reader.seqs[i], reader.seqs[i + 1]) for i, step in enumerate(steps) if step != 1
            ][:10]
        assert "Traceback" not in server.logs()
    finally:
        for reader in readers:
            reader.stop.set()
        server.stop()


def test_a_client_that_pauses_within_its_limits_gets_every_event_in_order_once_it_reads_again(environment, tmp_path):
    """Broadcasts of ~300 bytes at up to 400/s; a raw client with a tiny
    receive buffer subscribes and stops reading while a reader sees 1,000
    events published (over the stall mark of 256 frames, under the limit
    of 4,096). Its room events wait in the server meanwhile (the stall
    counter moves); when it reads again it gets every broadcast from the
    first on, in order, and is not closed."""
    env = {
        **environment,
        "BENCH_PUBLISH_RATE": "400",
        "BENCH_PUBLISH_ROOM": ROOM,
        "BENCH_PUBLISH_PAD": "200",
        "LOG_LEVEL": "INFO",
    }
    server = DaphneProcess(env, tmp_path / "daphne.log", app="devtools.publisher_app:application").start()
    reader: Reader | None = None
    try:
        reader = Reader(server.url, "reader0")
        reader.start()
        wait_for(lambda: len(reader.seqs) > 50, 30, "the reader to receive broadcasts")
        paused = slow_client(server, "slow_a", [ROOM])
        mark = len(reader.seqs)
        wait_for(lambda: len(reader.seqs) - mark >= 1000, 60, "1,000 broadcasts while the client pauses")
        seqs: list[int] = []
        skipped: list[int] = []
        deadline = time.monotonic() + 60
        while len(seqs) < 1500:
            assert time.monotonic() < deadline, f"{len(seqs)} broadcasts read"
            event = paused.recv_event(timeout=10)
            if event["event"] == "application_broadcast":
                seqs.append(event["data"]["seq"])
                skipped.append(event["data"]["skipped"])
        steps = [(b - a) - (sb - sa) for a, b, sa, sb in zip(seqs, seqs[1:], skipped, skipped[1:], strict=False)]
        assert set(steps) == {1}, [(seqs[i], seqs[i + 1]) for i, step in enumerate(steps) if step != 1][:10]
        # It got what was published while it paused (what the reader saw,
        # past what may have been on its way to the reader already).
        paused_window = set(reader.seqs[mark + 200 : mark + 1000])
        assert paused_window <= set(seqs), sorted(paused_window - set(seqs))[:10]
        with urllib.request.urlopen(f"{server.http}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        stalls = [
            sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.name == "ledgercore_outbound_stalls_total"
        ]
        assert stalls and stalls[0] >= 1, stalls
        assert "closing slow consumer" not in server.logs()
        assert "Traceback" not in server.logs()
        paused.close()
    finally:
        if reader is not None:
            reader.stop.set()
        server.stop()


def bar_of(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: frame["data"][k] for k in ("timestamp", "open", "high", "low", "close", "volume", "trades")}


def test_a_lagging_chart_subscriber_gets_the_latest_candles_and_never_an_older_one_after_a_newer(environment, tmp_path):
    """A live chart of the demo feed's fast replay (250ms candles). A raw
    client subscribes and stops reading for 6 s with limits of 4 KiB and 16
    frames (low watermark 1 KiB, 4 frames): its updates are conflated (it gets fewer than a reader
    that read all along) and it is not closed (updates held for it do not
    grow its buffer). When it reads again it gets the held updates, then
    the live ones: bar timestamps never go back, and the last state of each
    recent closed candle equals the reader's."""
    room = "market:XRP-ETH:250ms"
    env = {
        **environment,
        "LEDGERCORE_MARKET_DEMO_FEED": "true",
        "LEDGERCORE_MARKET_REPLAY_SPEED": "600",
        "LEDGERCORE_SEND_BUFFER_BYTES": "4096",
        "LEDGERCORE_SEND_BUFFER_FRAMES": "16",
        "LOG_LEVEL": "INFO",
    }
    server = DaphneProcess(env, tmp_path / "daphne.log").start()
    try:
        reference = connect(f"{server.url}/ws?token={dev_token('chart_ref')}")
        reference.send(json.dumps({"event": "subscribe", "data": {"room": room}, "id": "s"}))
        lagging = slow_client(server, "chart_lag", [room], rcvbuf=1024)  # the kernel's minimum
        initial = lagging.recv_event()
        assert initial["event"] == "market_chart_initial_data", initial
        reference_bars: list[dict[str, Any]] = []
        lagging_bars: list[dict[str, Any]] = []

        def read_reference(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    frame = json.loads(reference.recv(timeout=0.05))
                except TimeoutError:
                    continue
                if frame["event"] == "market_chart_live_update":
                    reference_bars.append(bar_of(frame))

        read_reference(6.0)  # the lagging client reads nothing meanwhile
        assert len(reference_bars) > 30, "the demo feed did not move the chart"
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            read_reference(0.05)
            try:
                frame = lagging.recv_event(timeout=0.05)
            except TimeoutError:
                continue
            if frame["event"] == "market_chart_live_update":
                lagging_bars.append(bar_of(frame))
        sent_meanwhile = len(reference_bars)
        read_reference(0.5)
        stamps = [bar["timestamp"] for bar in lagging_bars]
        assert stamps == sorted(stamps), "an older candle after a newer one"
        # Without conflation it would have got all of them (the reader
        # subscribed just before it).
        assert len(lagging_bars) < sent_meanwhile - 10, (len(lagging_bars), sent_meanwhile)
        final_ref: dict[int, dict[str, Any]] = {}
        for bar in reference_bars:
            final_ref[bar["timestamp"]] = bar
        final_lag: dict[int, dict[str, Any]] = {}
        for bar in lagging_bars:
            final_lag[bar["timestamp"]] = bar
        closed = sorted(final_lag)[-6:-1]  # recent candles that are no longer forming
        assert len(closed) >= 3
        for stamp in closed:
            assert final_lag[stamp] == final_ref[stamp], stamp
        assert "closing slow consumer" not in server.logs()
        reference.close()
        lagging.close()
    finally:
        server.stop()

"""Live charts over a real WebSocket: trades ingested while clients join;
the chart each client builds (initial series, then updates replacing or
appending bars) has no gap, no duplicate and no backwards timestamp, and
equals the stored candles bucket for bucket."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from marketdata import live, publish, services
from marketdata.candles import Tick
from marketdata.feeds import replay, trade_from_ccxt
from marketdata.trades import TradeInput
from tests.wsclient import Client, connected, unique

pytestmark = pytest.mark.django_db(transaction=True)

VENUES = ("venue-a", "venue-b")


def new_symbol() -> str:
    return "L" + uuid.uuid4().hex[:8].upper() + "-USD"


@database_sync_to_async
def listed(symbol: str) -> None:
    for venue in VENUES:
        services.ensure_listing(venue, symbol)


class Feed(threading.Thread):
    """Ingests small batches of trades stamped now, alternating venues."""

    def __init__(self, symbol: str, seconds: float, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.symbol, self.seconds, self.every = symbol, seconds, every
        self.stored = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            end = time.monotonic() + self.seconds
            n = 0
            while time.monotonic() < end:
                now = int(time.time() * 1000)
                batch = []
                for k in range(1 + n % 3):
                    n += 1
                    venue = VENUES[n % 2]
                    price = Decimal(100 + (n * 7) % 13) + Decimal(n % 10) / 10
                    batch.append(TradeInput(venue, self.symbol, str(n), now - k, price, Decimal("0.5"), "buy"))
                self.stored += services.ingest_trades(batch).inserted
                time.sleep(self.every)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            connections.close_all()


async def chart_of(client: Client, room: str, until: float) -> tuple[list[dict[str, Any]], int]:
    """Subscribe and build the chart as a charting library would; returns the
    bars and the number of live updates."""
    await client.send("subscribe", {"room": room}, id="join")
    subscribed = await client.expect("subscribed", timeout=10)
    assert subscribed["data"]["room"] == room
    initial = await client.expect("market_chart_initial_data", timeout=10)
    bars: list[dict[str, Any]] = list(initial["data"]["series"])
    stamps = [bar["timestamp"] for bar in bars]
    assert stamps == sorted(set(stamps)), "initial series out of order or with duplicates"
    return bars, await follow(client, room, bars, until)


async def follow(client: Client, room: str, bars: list[dict[str, Any]], until: float) -> int:
    """Apply the room's live updates to ``bars`` until the loop time
    ``until``, as a charting library would; returns how many came."""
    updates = 0
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        try:
            frame = await client.recv(timeout=max(0.05, until - loop.time()))
        except TimeoutError:
            break
        if frame["event"] != "market_chart_live_update":
            continue
        updates += 1
        data = frame["data"]
        bar = {k: data[k] for k in ("timestamp", "open", "high", "low", "close", "volume", "trades")}
        assert (data["symbol"], data["resolution"]) == tuple(room.split(":")[1:])
        if bars:
            assert bar["timestamp"] >= bars[-1]["timestamp"], "a bar older than the last one"
        if bars and bar["timestamp"] == bars[-1]["timestamp"]:
            bars[-1] = bar
        else:
            bars.append(bar)
    return updates


@database_sync_to_async
def stored(symbol: str, resolution: str, since_ms: int | None = None) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    start = now - 60_000 if since_ms is None else since_ms
    return [c.to_wire() for c in services.load_candles(symbol, resolution, start_ms=start, end_ms=now + 5_000)]


@pytest.mark.parametrize("resolution", ["100ms", "250ms", "1s"])
async def test_clients_joining_while_trades_arrive_see_every_bucket_once_and_in_order(live_server_url, resolution):
    symbol = new_symbol()
    await listed(symbol)
    feed = Feed(symbol, seconds=3.0)
    feed.start()
    await asyncio.sleep(0.6)
    room = f"market:{symbol}:{resolution}"
    early = await connected(live_server_url, unique("trader"))
    late = await connected(live_server_url, unique("trader"))
    loop = asyncio.get_running_loop()
    until = loop.time() + 3.6

    async def late_join() -> tuple[list[dict[str, Any]], int]:
        await asyncio.sleep(1.0)  # the room is live and seeded by now
        return await chart_of(late, room, until)

    (early_bars, early_updates), (late_bars, _) = await asyncio.gather(chart_of(early, room, until), late_join())
    feed.join(5)
    assert feed.error is None and feed.stored > 20  # trades flowed through the whole window
    truth = await stored(symbol, resolution)
    for bars in (early_bars, late_bars):
        assert bars, "no chart"
        # The stored candles from the chart's first bar on, bucket for bucket.
        expected = [c for c in truth if c["timestamp"] >= bars[0]["timestamp"]]
        assert bars == expected
    assert early_bars[-1] == truth[-1]
    # Conflation: at most 10 flushes a second, each with at most the buckets
    # that closed since the previous one plus the forming one.
    buckets = len([c for c in truth if c["timestamp"] >= early_bars[0]["timestamp"]])
    assert early_updates <= 3.6 * live.FLUSHES_PER_SECOND + buckets + 2
    await early.close()
    await late.close()


def test_one_message_of_two_venues_on_both_sides_of_a_boundary_counts_every_trade():
    """One ingestion stores venue-a's trade just after a bucket boundary and
    venue-b's just before it: applied in time order across venues, neither
    is dropped as late."""
    room = live.RoomState("market:A-B:1s", "A-B", "1s", live.CandleBuilder(["1s"]))
    after = [Tick(2_000, Decimal(2), Decimal(1), "venue-a", "1")]
    before = [Tick(1_999, Decimal(1), Decimal(1), "venue-b", "1")]
    room.apply_series([("venue-a", 10, after, True), ("venue-b", 11, before, True)])
    assert room.builder.late_trades == 0
    assert [(c.timestamp, c.trades) for c in room.closed] == [(1_000, 1)]
    assert (room.builder.forming("1s").timestamp, room.builder.forming("1s").trades) == (2_000, 1)
    assert room.seen == {"venue-a": 10, "venue-b": 11}


def _ingest(symbol: str, trades: list[tuple[str, str, int]], *, publish: bool) -> services.IngestResult:
    return services.ingest_trades(
        [
            TradeInput(venue, symbol, trade_id, ts, Decimal(100) + len(trade_id), Decimal(1), "buy")
            for venue, trade_id, ts in trades
        ],
        publish=publish,
    )


async def _join(client: Client, room: str) -> list[dict[str, Any]]:
    await client.send("subscribe", {"room": room})
    await client.expect("subscribed", timeout=10)
    return list((await client.expect("market_chart_initial_data", timeout=10))["data"]["series"])


async def _follow(client: Client, room: str, bars: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    await follow(client, room, bars, asyncio.get_running_loop().time() + seconds)
    return bars


async def test_a_joiner_gets_buckets_whose_trades_are_still_on_their_way_complete(live_server_url):
    """Trades committed before a join's read but not yet delivered to the
    room (held here, as a slow channel layer would) complete the room's
    bucket B while the stored history already has bucket B+1. The joiner
    must end with B complete, not with B's partial in-memory state and B's
    final update skipped as older than B+1."""
    symbol = new_symbol()
    await listed(symbol)
    room = f"market:{symbol}:1m"
    minute = (int(time.time() * 1000) // 60_000 - 10) * 60_000
    early = await connected(live_server_url, unique("trader"))
    assert await _join(early, room) == []
    await database_sync_to_async(_ingest)(symbol, [("venue-a", "1", minute + 1_000)], publish=True)
    first = await early.expect("market_chart_live_update", timeout=5)
    assert (first["data"]["timestamp"], first["data"]["trades"]) == (minute, 1)
    held = await database_sync_to_async(_ingest)(
        symbol, [("venue-b", "2", minute + 2_000), ("venue-a", "3", minute + 61_000)], publish=False
    )

    async def release() -> None:
        await asyncio.sleep(0.3)
        await database_sync_to_async(publish.publish)(held.series)

    late = await connected(live_server_url, unique("trader"))
    releasing = asyncio.create_task(release())
    joined = await _join(late, room)
    await releasing
    bars = await _follow(late, room, joined, 1.0)
    truth = await stored(symbol, "1m", since_ms=minute)
    assert [(b["timestamp"], b["trades"]) for b in truth] == [(minute, 2), (minute + 60_000, 1)]
    assert bars == truth
    assert await _follow(early, room, [{key: first["data"][key] for key in truth[0]}], 1.0) == truth
    await early.close()
    await late.close()


async def test_a_join_does_not_wait_forever_for_trades_that_are_never_published(live_server_url, monkeypatch):
    """Trades stored without a live publication (a bulk import) never reach
    the room: the first join waits at most CATCH_UP_SECONDS and gets them
    from the stored candles; later joins do not wait again."""
    monkeypatch.setattr(live, "CATCH_UP_SECONDS", 0.5)
    symbol = new_symbol()
    await listed(symbol)
    room = f"market:{symbol}:1m"
    minute = (int(time.time() * 1000) // 60_000 - 10) * 60_000
    first = await connected(live_server_url, unique("trader"))
    assert await _join(first, room) == []
    await database_sync_to_async(_ingest)(
        symbol, [("venue-a", "1", minute), ("venue-b", "2", minute + 5)], publish=False
    )
    loop = asyncio.get_running_loop()
    second = await connected(live_server_url, unique("trader"))
    started = loop.time()
    bars = await _join(second, room)
    waited = loop.time() - started
    assert [(b["timestamp"], b["trades"]) for b in bars] == [(minute, 2)]
    assert 0.4 <= waited < 5
    third = await connected(live_server_url, unique("trader"))
    started = loop.time()
    assert await _join(third, room) == bars
    assert loop.time() - started < 0.4
    for client in (first, second, third):
        await client.close()


async def test_merged_chart_counts_every_venue(live_server_url):
    symbol = new_symbol()
    await listed(symbol)
    client = await connected(live_server_url, unique("trader"))
    await client.send("subscribe", {"room": f"market:{symbol}:1m"})
    initial = await client.expect("market_chart_initial_data", timeout=10)
    assert initial["data"]["series"] == []
    now = int(time.time() * 1000)
    await database_sync_to_async(services.ingest_trades)(
        [
            TradeInput("venue-a", symbol, "1", now, Decimal("10"), Decimal("1"), "buy"),
            TradeInput("venue-b", symbol, "1", now, Decimal("12"), Decimal("2"), "sell"),
        ]
    )
    update = await client.expect("market_chart_live_update", timeout=5)
    # One ingestion, one update, both venues in it.
    assert (update["data"]["volume"], update["data"]["trades"], update["data"]["high"]) == (3.0, 2, 12.0)
    await client.close()


async def test_unknown_symbol_room_is_not_found(live_server_url):
    client = await connected(live_server_url, unique("trader"))
    reply = await client.request("subscribe", {"room": "market:NOPE-USD:1s"})
    assert (reply["event"], reply["data"]["code"]) == ("error", "NOT_FOUND")
    reply = await client.request("subscribe", {"room": "market:BTC-USD:7s"})
    assert reply["event"] == "validation_error"
    await client.close()


def test_ccxt_trades_map_to_trade_inputs_exactly():
    recorded = {
        "id": "13519807",
        "timestamp": 1570752011620,
        "price": 0.0008,
        "amount": 120.0,
        "side": "sell",
        "info": {"a": 13519807, "p": "0.00080010", "q": "120.00000000", "T": 1570752011620, "m": True},
    }
    trade = trade_from_ccxt(recorded, venue="binance", symbol="XRP-ETH")
    assert trade == TradeInput(
        "binance", "XRP-ETH", "13519807", 1570752011620, Decimal("0.00080010"), Decimal("120.00000000"), "sell"
    )
    bare = trade_from_ccxt(
        {"id": 5, "timestamp": 1, "price": 0.1, "amount": 3, "side": "buy", "info": {}}, venue="x", symbol="A-B"
    )
    assert (bare.price, bare.size, bare.trade_id) == (Decimal("0.1"), Decimal("3"), "5")


def test_large_batches_are_split_without_losing_or_repeating_trades():
    ticks = [Tick(i, Decimal(1), Decimal(1), "v", str(i)) for i in range(12_000)]
    batches = [services.NewTrades("A-B", "v", 99, ticks[:11_000]), services.NewTrades("A-B", "w", 7, ticks[11_000:])]
    messages = list(publish._messages("A-B", batches))
    assert [sum(len(part[2]) for part in m["series"]) for m in messages] == [5_000, 5_000, 2_000]
    parts = [part for m in messages for part in m["series"]]
    assert [(p[0], p[1], p[3]) for p in parts] == [("v", 99, False), ("v", 99, False), ("v", 99, True), ("w", 7, True)]
    room = live.RoomState("market:A-B:1s", "A-B", "1s", live.CandleBuilder(["1s"]), seen={"v": 0})
    for venue, watermark, rows, last in parts:
        room.apply(venue, watermark, live._ticks(venue, rows), last)
    assert sum(c.trades for c in room.closed) + room.builder.forming("1s").trades == 12_000
    room.apply("v", 99, live._ticks("v", parts[0][2]), True)  # a repeat of a counted batch
    assert sum(c.trades for c in room.closed) + room.builder.forming("1s").trades == 12_000


def test_replay_moves_trades_to_now_keeps_their_pace_and_renames_them():
    trades = [TradeInput("v", "A-B", str(i), 1_000_000 + i * 50, Decimal(1), Decimal(1), "buy") for i in range(10)]
    batches = list(replay(trades, speed=2.0, run_id="run1", start_ms=5_000, batch_ms=100))
    moved = [t for _, batch in batches for t in batch]
    assert [t.ts for t in moved] == [5_000 + i * 25 for i in range(10)]
    assert [t.trade_id for t in moved] == [f"run1-{i}" for i in range(10)]
    dues = [due for due, _ in batches]
    assert dues == sorted(dues) and all(b - a >= 0.1 for a, b in itertools.pairwise(dues))

"""Market data benchmark: trades ingested (persisted and in memory), candle
aggregation against polars, ``request_market_data`` latency over a real
WebSocket, and trade-to-subscriber latency of live chart updates.

    .venv/bin/python bench/marketdata.py [--stack embedded|scaled|both]
        [--trades 1000000] [--batch 10000] [--requests 40]
        [--subscribers 1000] [--live-trades 100] [--busy-trades 100]

Per stack, on a fresh migrated database (devtools.servers.server_environment),
the parent re-invokes this script as ``--worker STACK`` with the stack's
environment; the worker prints one ``result {...}`` line.

- **Store**: synthetic trades of the last 24 h ending now on two venues
  (binance 60 %, coinbase 40 %): --trades of BTC-USDT (the symbol queried
  and watched), plus 7 % and 3 % as many of ETH-USDT and SOL-USDT, merged in
  timestamp order, so every batch mixes the six series as a feed or an
  import would. Random-walk prices, sizes from a skewed pool, numeric trade
  ids: a pure function of the seed and the start time. Once generated,
  they are moved out of the garbage collector's way (``gc.freeze``), as
  the server processes do with their startup objects.
- **Persisted ingestion**: ``services.ingest_trades`` in batches of --batch
  (validation, idempotent insert, the five stored roll-ups, the series
  summary, the after-commit publish to live charts), one transaction each.
  **Baseline**, in the same run, batch by batch alternately with it (each
  batch goes first to the baseline, then to ingest_trades, so both meet the
  same load on a shared machine): the same rows inserted plainly in the
  same batches into a copy of the trade table (same columns, indexes,
  checks and foreign keys) with no roll-ups (PostgreSQL: COPY; SQLite:
  executemany INSERT). Rates are trades over the sum of each one's batch
  times. Ratio = ingest_trades / baseline. --ingest-only stops after this
  part (and the stored-candle check); --profile FILE runs ingest_trades
  under cProfile.
- **In memory**: the first --memory-trades BTC-USDT trades applied one by
  one to a ``CandleBuilder`` of all 14 resolutions (what a live chart does).
- **Aggregation**: ``candles.aggregate_ticks`` over every BTC-USDT trade
  (both venues merged) at 1m and 100ms, against polars on the same trades
  (a frame of exact decimals; group by ts - ts % resolution; open/close
  first/last by (ts, venue, trade id), high/low max/min, volume sum, count),
  median of 3 polars runs. Building the frame from the Python trades is
  timed apart. Polars' candles must equal ours bucket for bucket (printed).
  The candles stored by ingestion must equal ours at 1m (printed).
- **Requests**: daphne (as ``make run``) on the same database; one
  WebSocket sends --requests sequential ``request_market_data`` (after
  warm-ups) for 24 h of 1m candles and for 15 min of 100 ms candles of
  BTC-USDT (all venues merged), windows ending where the store ends;
  latency from send to the response frame's arrival. For reference, the
  same ``fetch_candles`` calls (and conversion to wire form) in process.
- **Live**: a client process opens --subscribers WebSockets (10 per user) to
  the same server and joins ``market:BTC-USDT:1m``. It uses picows, whose
  frame callback runs as each frame is parsed (no task per socket), and
  keeps only each frame's arrival time and bytes until the run ends: one
  Python process reading a thousand sockets on the server's machine is the
  measurement's own cost, kept as small as it can be. Trades stamped now are
  then ingested one at a time: --live-trades "quiet" ones --live-interval
  apart (above the 100 ms conflation interval, so each is flushed at once),
  then --busy-trades at --busy-rate per second (conflated: at most 10
  flushes a second by design). A trade's latency runs to the first
  ``market_chart_live_update`` on each socket whose bucket is later than the
  trade's, or the same with ``trades`` at least the bucket's count once the
  trade is in. Scaled stack: the worker process ingests, the trades reach
  the server's hub through Redis, and latency starts at the commit (an
  on_commit hook registered before the publish). Embedded stack: the
  in-memory channel layer does not cross processes, so the worker POSTs
  each trade to ``/api/market/trades`` and the server ingests it; latency
  starts just before the POST. Both use the monotonic clock, which is
  system-wide. First, as a reference, the same quiet trades with one
  subscriber: the path without the fan-out. "1st"/"last" are the earliest
  and latest socket per trade.

Client, server, worker, PostgreSQL and Redis share the machine; see
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import add_service_arguments, percentile  # noqa: E402
from devtools.servers import DaphneProcess, server_environment  # noqa: E402
from marketdata.resolutions import RESOLUTION_MS  # noqa: E402
from marketdata.trades import TradeInput  # noqa: E402

SECRET = uuid.uuid4().hex + uuid.uuid4().hex
RESULT_PREFIX = "result "
READY_PREFIX = "ready "
DONE_PREFIX = "done "
STACK_LABELS = {"embedded": "SQLite, in-memory layer", "scaled": "PostgreSQL, Redis"}
DAY_MS = 86_400_000
MAIN = "BTC-USDT"
VENUES = (("binance", 0.6), ("coinbase", 0.4))
# symbol -> (reference price, price places, size places, share of --trades)
SYMBOLS = {
    MAIN: (64_000.0, 2, 6, 1.0),
    "ETH-USDT": (3_200.0, 2, 5, 0.07),
    "SOL-USDT": (150.0, 3, 4, 0.03),
}
AGGREGATION_RESOLUTIONS = ("1m", "100ms")
LIVE_RESOLUTION = "1m"
TABS_PER_USER = 10
CONNECT_BATCH = 50
THROTTLES = "connection=100000/s,user=100000/s"


def summary(values: list[float], *pcts: float) -> dict[str, float]:
    out = {f"p{pct:g}_ms": percentile(values, pct) for pct in pcts}
    out["max_ms"] = max(values, default=float("nan"))
    return out


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def token(user_id: str) -> str:
    import jwt

    now = int(time.time())
    secret = os.environ["LEDGERCORE_DEV_JWT_SECRET"]
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + 3600}, secret, algorithm="HS256")


# --- the store ---------------------------------------------------------------------


SIDES = ("buy", "sell")
SIZE_POOL = 4096


def series_trades(symbol: str, venue: str, count: int, start_ms: int, end_ms: int, seed: int) -> list[TradeInput]:
    """``count`` trades of one (symbol, venue) spread at random over [start_ms, end_ms)."""
    reference, price_places, size_places, _ = SYMBOLS[symbol]
    rng = random.Random(seed)
    span = end_ms - start_ms
    stamps = sorted([start_ms + int(rng.random() * span) for _ in range(count)])
    anchor = round(reference * 10**price_places)
    reach = max(1, anchor // 20_000)  # steps of up to half a basis point
    lot = 10 ** (size_places - 2)
    pool = [Decimal(max(1, int(rng.lognormvariate(0, 1.6) * lot))).scaleb(-size_places) for _ in range(SIZE_POOL)]
    # Prices stay in a narrow band and repeat: one Decimal per price level
    # keeps generating a million trades to a few seconds.
    levels: dict[int, Decimal] = {}
    units = anchor
    out = []
    first_id = 1_000_000_000
    for n, ts in enumerate(stamps):
        draw = rng.getrandbits(32)
        units += int((rng.random() - 0.5) * 2 * reach) - (units - anchor) // 2048
        price = levels.get(units)
        if price is None:
            price = levels[units] = Decimal(units).scaleb(-price_places)
        out.append(TradeInput(venue, symbol, str(first_id + n), ts, price, pool[draw % SIZE_POOL], SIDES[draw >> 31]))
    return out


def make_store(count: int, end_ms: int) -> list[TradeInput]:
    trades: list[TradeInput] = []
    seed = 0
    for symbol, (_, _, _, share) in SYMBOLS.items():
        for venue, part in VENUES:
            seed += 1
            trades += series_trades(symbol, venue, round(count * share * part), end_ms - DAY_MS, end_ms, seed)
    trades.sort(key=itemgetter(3))
    return trades


def chunks(trades: list[TradeInput], size: int) -> list[list[TradeInput]]:
    return [trades[start : start + size] for start in range(0, len(trades), size)]


# --- in memory: CandleBuilder and aggregation against polars ----------------------


def builder_rate(ticks: list[Any]) -> dict[str, Any]:
    from marketdata.candles import CandleBuilder
    from marketdata.resolutions import RESOLUTIONS

    builder = CandleBuilder(RESOLUTIONS)
    apply = builder.apply
    started = time.perf_counter()
    for tick in ticks:
        apply(tick)
    elapsed = time.perf_counter() - started
    return {"trades": len(ticks), "resolutions": len(RESOLUTIONS), "seconds": elapsed, "per_s": len(ticks) / elapsed}


def polars_frame(ticks: list[Any]) -> Any:
    import polars as pl

    _, price_places, size_places, _ = SYMBOLS[MAIN]
    return pl.DataFrame(
        {
            "ts": [t.ts for t in ticks],
            "venue": [t.venue for t in ticks],
            "tid": [int(t.trade_id) for t in ticks],
            "price": pl.Series([str(t.price) for t in ticks]).str.to_decimal(scale=price_places),
            "size": pl.Series([str(t.size) for t in ticks]).str.to_decimal(scale=size_places),
        }
    )


def polars_candles(frame: Any, size: int) -> Any:
    import polars as pl

    order = ["ts", "venue", "tid"]
    return (
        frame.lazy()
        .group_by((pl.col("ts") - pl.col("ts") % size).alias("bucket"))
        .agg(
            pl.col("price").sort_by(order).first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").sort_by(order).last().alias("close"),
            pl.col("size").sum().alias("volume"),
            pl.len().alias("trades"),
        )
        .sort("bucket")
        .collect()
    )


def candle_rows(candles: Iterable[Any]) -> list[tuple[Any, ...]]:
    return [(c.timestamp, c.open, c.high, c.low, c.close, c.volume, c.trades) for c in candles]


def aggregation(ticks: list[Any], runs: int) -> tuple[dict[str, Any], list[Any]]:
    """Ours against polars per resolution; also returns our 1m candles."""
    from marketdata.candles import aggregate_ticks

    started = time.perf_counter()
    frame = polars_frame(ticks)
    out: dict[str, Any] = {"trades": len(ticks), "frame_build_s": time.perf_counter() - started}
    minute: list[Any] = []
    for resolution in AGGREGATION_RESOLUTIONS:
        size = RESOLUTION_MS[resolution]
        started = time.perf_counter()
        ours = aggregate_ticks(ticks, size)
        ours_s = time.perf_counter() - started
        timings = []
        theirs = None
        for _ in range(runs):
            started = time.perf_counter()
            theirs = polars_candles(frame, size)
            timings.append(time.perf_counter() - started)
        assert theirs is not None
        polars_s = sorted(timings)[len(timings) // 2]
        rows = theirs.rows()
        ours_rows = candle_rows(ours)
        mismatched = sum(1 for a, b in zip(ours_rows, rows, strict=False) if a != b)
        out[resolution] = {
            "candles": len(ours),
            "ours_s": ours_s,
            "ours_per_s": len(ticks) / ours_s,
            "polars_s": polars_s,
            "polars_per_s": len(ticks) / polars_s,
            "equal": len(rows) == len(ours_rows) and mismatched == 0,
            "mismatched": mismatched + abs(len(rows) - len(ours_rows)),
        }
        if resolution == "1m":
            minute = ours
    return out, minute


# --- persisted: baseline bulk insert and ingest_trades ----------------------------

PLAIN = "bench_plain_trade"


def create_plain_table() -> None:
    """A copy of the trade table (columns, indexes, checks, foreign keys)."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"CREATE TABLE {PLAIN} (LIKE marketdata_trade INCLUDING ALL)")
            for column, target in (("venue_id", "marketdata_venue"), ("instrument_id", "marketdata_instrument")):
                cursor.execute(
                    f"ALTER TABLE {PLAIN} ADD FOREIGN KEY ({column}) REFERENCES {target} (id) "
                    "DEFERRABLE INITIALLY DEFERRED"
                )
            return
        cursor.execute("SELECT type, sql FROM sqlite_master WHERE tbl_name = 'marketdata_trade' AND sql IS NOT NULL")
        for kind, original in sorted(cursor.fetchall(), key=lambda row: row[0] != "table"):
            sql = original.replace('"marketdata_trade"', f'"{PLAIN}"')
            if kind == "index":
                sql = sql.replace('INDEX "', f'INDEX "{PLAIN}_', 1)
            cursor.execute(sql)


def drop_plain_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {PLAIN}")


Op = Callable[[list[TradeInput]], Any]


def timed_alternately(groups: list[list[TradeInput]], ops: dict[str, Op], profile: Any = None) -> dict[str, Any]:
    """Each batch through every op in turn (the baseline, then ours), so
    that both meet the same load on a shared machine; per op, the sum of
    its batch times. ``profile`` (a cProfile.Profile) runs only around the
    last op."""
    per_batch: dict[str, list[float]] = {name: [] for name in ops}
    last = list(ops)[-1]
    for group in groups:
        for name, op in ops.items():
            if profile is not None and name == last:
                profile.enable()
            began = time.perf_counter()
            op(group)
            per_batch[name].append((time.perf_counter() - began) * 1000)
            if profile is not None and name == last:
                profile.disable()
    trades = sum(len(group) for group in groups)
    out = {}
    for name, times in per_batch.items():
        seconds = sum(times) / 1000
        out[name] = {
            "trades": trades,
            "batches": len(groups),
            "seconds": seconds,
            "per_s": trades / seconds,
            "batch_p50_ms": percentile(times, 50),
            "batch_p99_ms": percentile(times, 99),
        }
    return out


def baseline_op() -> tuple[Op, str]:
    """The plain insert of a batch into the copy of the trade table, and
    its method's name."""
    from django.db import connection, transaction

    from marketdata.models import Instrument, Venue

    venues = dict(Venue.objects.values_list("code", "id"))
    instruments = dict(Instrument.objects.values_list("symbol", "id"))
    columns = "venue_id, instrument_id, trade_id, ts, price, size, side"
    sqlite = connection.vendor == "sqlite"
    insert = f"INSERT INTO {PLAIN} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s)"

    def insert_batch(group: list[TradeInput]) -> None:
        # What any loader does: map codes to ids; SQLite stores doubles.
        number: Callable[[Decimal], Any] = float if sqlite else Decimal
        rows = [(venues[t[0]], instruments[t[1]], t[2], t[3], number(t[4]), number(t[5]), t[6]) for t in group]
        with transaction.atomic(), connection.cursor() as cursor:
            if sqlite:
                cursor.executemany(insert, rows)
                return
            with cursor.cursor.copy(f"COPY {PLAIN} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    return insert_batch, "executemany INSERT" if sqlite else "COPY"


def persisted(groups: list[list[TradeInput]], profile: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The baseline and ingest_trades, batch by batch alternately; with
    ``profile``, ingest_trades runs under cProfile, whose statistics go to
    that file (``python -m pstats FILE``)."""
    from marketdata import services

    inserted = 0

    def ingest_batch(group: list[TradeInput]) -> None:
        nonlocal inserted
        inserted += services.ingest_trades(group).inserted

    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    create_plain_table()
    try:
        baseline, method = baseline_op()
        results = timed_alternately(groups, {"baseline": baseline, "ingest": ingest_batch}, profiler)
    finally:
        drop_plain_table()
    if profiler is not None and profile:
        profiler.dump_stats(profile)
    results["baseline"]["method"] = method
    results["ingest"]["inserted"] = inserted
    results["ingest"]["batch_size"] = len(groups[0]) if groups else 0
    return results["baseline"], results["ingest"]


def stored_check(minute: list[Any], start_ms: int, end_ms: int) -> dict[str, Any]:
    """The stored 1m candles of the store's day equal the in-memory ones."""
    from marketdata import services
    from marketdata.models import Instrument, TradeSeries

    stored = services.load_candles(MAIN, "1m", start_ms=start_ms - start_ms % 60_000, end_ms=end_ms + 60_000)
    instrument = Instrument.objects.get(symbol=MAIN)
    counted = sum(TradeSeries.objects.filter(instrument=instrument).values_list("trades", flat=True))
    return {"candles": len(stored), "equal": candle_rows(stored) == candle_rows(minute), "series_trades": counted}


# --- requests over a WebSocket ----------------------------------------------------

REQUESTS = {"1m_24h": ("1m", DAY_MS), "100ms_15m": ("100ms", 15 * 60_000)}


def request_data(name: str, end_ms: int) -> dict[str, Any]:
    """The request ``name`` for the span ending at ``end_ms`` (the store's
    end, so that the window is full however long ingestion took)."""
    resolution, span = REQUESTS[name]
    return {"symbol": MAIN, "resolution": resolution, "window": {"from": end_ms - span, "to": end_ms}}


async def connect(url: str, user: str) -> Any:
    import websockets

    ws = await websockets.connect(f"{url}/ws?token={token(user)}", max_size=None, open_timeout=60)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert hello["event"] == "connected", hello
    return ws


async def request_latency(url: str, end_ms: int, args: argparse.Namespace) -> dict[str, Any]:
    ws = await connect(url, "bench_reader")
    # Whatever the server pushes on connect (the balance event) is read first.
    while True:
        try:
            await asyncio.wait_for(ws.recv(), 0.5)
        except TimeoutError:
            break
    out: dict[str, Any] = {}
    for name in REQUESTS:
        data = request_data(name, end_ms)
        latencies: list[float] = []
        candles = size = 0
        for n in range(-args.warmup, args.requests):
            request_id = f"{name}-{n}"
            sent = time.perf_counter()
            await ws.send(json.dumps({"event": "request_market_data", "data": data, "id": request_id}))
            while True:
                raw = await asyncio.wait_for(ws.recv(), 60)
                arrived = time.perf_counter()
                frame = json.loads(raw)
                if frame.get("id") == request_id:
                    break
            if frame["event"] != "market_data_response":
                raise RuntimeError(f"{name}: {frame['event']} {frame['data']}")
            candles, size = len(frame["data"]["candles"]), len(raw)
            if n >= 0:
                latencies.append((arrived - sent) * 1000)
        out[name] = {"requests": len(latencies), "candles": candles, "bytes": size, **summary(latencies, 50, 95, 99)}
    await ws.close()
    return out


def in_process_fetch(end_ms: int, runs: int) -> dict[str, Any]:
    from marketdata import services

    out: dict[str, Any] = {}
    for name in REQUESTS:
        data = request_data(name, end_ms)
        latencies = []
        for _ in range(runs + 1):
            started = time.perf_counter()
            series = services.fetch_candles(data["symbol"], data["resolution"], window=data["window"])
            [candle.to_wire() for candle in series.candles]  # as the handler does
            latencies.append((time.perf_counter() - started) * 1000)
        out[name] = summary(latencies[1:], 50, 95)
    return out


# --- live: a client process of many subscribers ----------------------------------


def subscriber_class() -> Any:
    from picows import WSListener, WSMsgType

    class Subscriber(WSListener):  # type: ignore[misc]
        """One subscriber socket of the --clients process (picows: frames are
        handed over as they are parsed, with no task per socket). Before the
        trades, frames are queued for the joining code; during them only the
        arrival time and the payload are kept, parsed after the run."""

        def __init__(self) -> None:
            self.transport: Any = None
            self.queue: asyncio.Queue[str] = asyncio.Queue()
            self.recording: list[tuple[float, bytes]] | None = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                if self.recording is not None:
                    self.recording.append((time.monotonic(), frame.get_payload_as_bytes()))
                else:
                    self.queue.put_nowait(frame.get_payload_as_utf8_text())
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

        def send_json(self, message: dict[str, Any]) -> None:
            self.transport.send(WSMsgType.TEXT, json.dumps(message).encode())

        async def recv_json(self, timeout: float) -> dict[str, Any]:
            return json.loads(await asyncio.wait_for(self.queue.get(), timeout))

    return Subscriber


async def subscribe(url: str, user: str) -> Any:
    from picows import ws_connect

    _, connected = await ws_connect(
        subscriber_class(), f"{url}/ws?token={token(user)}", websocket_handshake_timeout=60, max_frame_size=1 << 26
    )
    listener: Any = connected
    hello = await listener.recv_json(30)
    assert hello["event"] == "connected", hello
    return listener


async def run_clients(args: argparse.Namespace) -> None:
    """The --clients process: open, join, report readiness, record every
    frame's arrival until told the trades, then match them."""
    count = args.subscribers
    users = [f"bench_live{i // TABS_PER_USER}" for i in range(count)]
    room = f"market:{MAIN}:{LIVE_RESOLUTION}"
    started = time.perf_counter()
    sockets: list[Any] = []
    for start in range(0, count, CONNECT_BATCH):
        sockets += await asyncio.gather(
            *(subscribe(args.clients, user) for user in users[start : start + CONNECT_BATCH])
        )
    connected_s = time.perf_counter() - started

    bases: list[dict[int, int]] = [{} for _ in sockets]
    joins: list[float] = []

    async def join(index: int) -> None:
        listener = sockets[index]
        sent = time.perf_counter()
        listener.send_json({"event": "subscribe", "data": {"room": room}, "id": "join"})
        while True:
            frame = await listener.recv_json(120)
            if frame.get("event") == "market_chart_initial_data":
                break
            if frame.get("id") == "join" and frame.get("event") != "subscribed":
                raise RuntimeError(f"join refused: {frame}")
        joins.append((time.perf_counter() - sent) * 1000)
        series = frame["data"]["series"]
        if series:
            bases[index][series[-1]["timestamp"]] = series[-1]["trades"]

    started = time.perf_counter()
    for start in range(0, count, CONNECT_BATCH):
        await asyncio.gather(*(join(i) for i in range(start, min(count, start + CONNECT_BATCH))))
    joined_s = time.perf_counter() - started

    for listener in sockets:
        listener.recording = []
    ready = {
        "subscribers": count,
        "connect_s": connected_s,
        "join_s": joined_s,
        "join_p50_ms": percentile(joins, 50),
        "join_p99_ms": percentile(joins, 99),
    }
    print(READY_PREFIX + json.dumps(ready), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line.startswith(DONE_PREFIX):
        raise RuntimeError(f"clients: expected the trades, got {line[:80]!r}")
    trades = json.loads(line[len(DONE_PREFIX) :])
    arrivals: list[list[tuple[float, int, int]]] = []
    for listener in sockets:
        recorded, listener.recording = listener.recording, None
        received = []
        for arrived, payload in recorded:
            frame = json.loads(payload)
            if frame.get("event") == "market_chart_live_update":
                received.append((arrived, frame["data"]["timestamp"], frame["data"]["trades"]))
        arrivals.append(received)
    result = {"ready": ready, "frames": sum(len(a) for a in arrivals), **match_trades(trades, arrivals, bases)}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    for listener in sockets:
        listener.transport.send_close()
        listener.transport.disconnect()


def match_trades(
    trades: list[list[Any]], arrivals: list[list[tuple[float, int, int]]], bases: list[dict[int, int]]
) -> dict[str, Any]:
    """Per phase: latency from each trade's start mark to the first update on
    each socket that contains it. Trades come in order and each socket's
    updates never go back, so one forward sweep per socket suffices."""
    phases: dict[str, dict[str, list[float]]] = {}
    missing: dict[str, int] = {}
    per_trade: list[list[float]] = [[] for _ in trades]
    for received, base in zip(arrivals, bases, strict=True):
        j = 0
        for i, (_, bucket, need, mark) in enumerate(trades):
            wanted = base.get(bucket, 0) + need
            while j < len(received) and not (
                received[j][1] > bucket or (received[j][1] == bucket and received[j][2] >= wanted)
            ):
                j += 1
            if j == len(received):
                for phase, *_ in trades[i:]:
                    missing[phase] = missing.get(phase, 0) + 1
                break
            per_trade[i].append((received[j][0] - mark) * 1000)
    for (phase, *_), latencies in zip(trades, per_trade, strict=True):
        bucket = phases.setdefault(phase, {"all": [], "first": [], "last": []})
        bucket["all"] += latencies
        if latencies:
            bucket["first"].append(min(latencies))
            bucket["last"].append(max(latencies))
    out: dict[str, Any] = {}
    for phase, values in phases.items():
        out[phase] = {
            "trades": sum(1 for t in trades if t[0] == phase),
            "deliveries": len(values["all"]),
            "missing": missing.get(phase, 0),
            **summary(values["all"], 50, 99),
            "first_p50_ms": percentile(values["first"], 50),
            "first_p99_ms": percentile(values["first"], 99),
            "last_p50_ms": percentile(values["last"], 50),
            "last_p99_ms": percentile(values["last"], 99),
        }
    return out


class LiveFeed:
    """Trades stamped now, one at a time, from the worker: ingested here
    (``commit``: the mark is the commit) or POSTed to the server (``post``:
    the mark is just before the request)."""

    def __init__(self, path: str, http: str) -> None:
        self.path = path
        self.http = http
        self.counts: dict[int, int] = {}
        self.sent = 0
        self.run = uuid.uuid4().hex[:8]
        self.price = Decimal("64000.00")
        self.bearer = token("bench_feed")

    def trade(self) -> TradeInput:
        self.sent += 1
        venue = VENUES[self.sent % 2][0]
        self.price += Decimal(self.sent % 7 - 3).scaleb(-2)
        now, side = time.time_ns() // 1_000_000, SIDES[self.sent % 2]
        return TradeInput(venue, MAIN, f"{self.run}-{self.sent}", now, self.price, Decimal("0.01"), side)

    def one(self) -> tuple[int, int, float, float]:
        """Send one trade; returns (bucket, trades of ours in it, mark, ms
        the call took: ingest_trades up to its commit, or the POST)."""
        from django.db import transaction

        from marketdata import services

        trade = self.trade()
        if self.path == "commit":
            marks: dict[str, float] = {}
            began = time.monotonic()
            with transaction.atomic():
                # Registered before ingest_trades' publish hook, so it runs first after COMMIT.
                transaction.on_commit(lambda: marks.setdefault("commit", time.monotonic()))
                inserted = services.ingest_trades([trade]).inserted
            mark = marks["commit"]
            call_ms = (mark - began) * 1000
        else:
            body = {
                "trades": [
                    {
                        "venue": trade.venue,
                        "symbol": trade.symbol,
                        "id": trade.trade_id,
                        "timestamp": trade.ts,
                        "price": str(trade.price),
                        "size": str(trade.size),
                        "side": trade.side,
                    }
                ]
            }
            request = urllib.request.Request(
                f"{self.http}/api/market/trades",
                data=json.dumps(body).encode(),
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.bearer}"},
            )
            mark = time.monotonic()
            with urllib.request.urlopen(request, timeout=30) as response:  # local server
                inserted = json.loads(response.read())["inserted"]
            call_ms = (time.monotonic() - mark) * 1000
        if inserted != 1:
            raise RuntimeError(f"live trade not stored once ({inserted})")
        size = RESOLUTION_MS[LIVE_RESOLUTION]
        bucket = trade.ts - trade.ts % size
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        return bucket, self.counts[bucket], mark, call_ms


def read_line(stream: IO[str], prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise RuntimeError("the client process ended early")
        if line.startswith(prefix):
            return line[len(prefix) :]
    raise RuntimeError(f"no {prefix.strip()} line within {timeout:.0f} s")


Phase = tuple[str, int, float]  # name, trades, seconds between trades


def live_latency(server: DaphneProcess, path: str, subscribers: int, phases: list[Phase]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--clients", server.url]
    command += ["--subscribers", str(subscribers)]
    clients = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert clients.stdin is not None and clients.stdout is not None
    try:
        ready = json.loads(read_line(clients.stdout, READY_PREFIX, 600))
        log(f"live: subscribers: {ready['subscribers']}, joined in {ready['join_s']:.1f} s; sending trades ({path})")
        feed = LiveFeed(path, server.http)
        sent: list[list[Any]] = []
        calls: dict[str, list[float]] = {}
        for phase, count, interval in phases:
            due = time.monotonic()
            for _ in range(count):
                bucket, need, mark, call_ms = feed.one()
                sent.append([phase, bucket, need, mark])
                calls.setdefault(phase, []).append(call_ms)
                due += interval
                time.sleep(max(0.0, due - time.monotonic()))
        time.sleep(2.0)  # the last flushes reach every socket
        clients.stdin.write(DONE_PREFIX + json.dumps(sent) + "\n")
        clients.stdin.flush()
        result: dict[str, Any] = json.loads(read_line(clients.stdout, RESULT_PREFIX, 300))
        result.pop("warmup", None)
        for phase, values in calls.items():
            if phase in result:
                result[phase]["call_p50_ms"] = percentile(values, 50)
                result[phase]["call_p99_ms"] = percentile(values, 99)
    finally:
        if clients.poll() is None:
            try:
                clients.wait(timeout=60)
            except subprocess.TimeoutExpired:
                clients.kill()
                clients.wait()
    result.update(path=path, resolution=LIVE_RESOLUTION)
    return result


# --- worker: one stack, Django configured from the inherited environment ----------


def prepare_users(subscribers: int) -> None:
    from accounts.services import get_or_create_user

    for i in range(-(-subscribers // TABS_PER_USER)):
        get_or_create_user(f"bench_live{i}")
    get_or_create_user("bench_reader")
    feeder = get_or_create_user("bench_feed")
    feeder.is_staff = True  # may POST trades
    feeder.save(update_fields=["is_staff"])


def worker(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ledgercore.settings")
    import django

    django.setup()
    from django.db import connections

    from marketdata import services
    from marketdata.candles import Tick, aggregate_ticks
    from realtime.protocol import now_ms

    results: dict[str, Any] = {"load_at_start": os.getloadavg()[0]}
    end_ms = now_ms()
    started = time.perf_counter()
    store = make_store(args.trades, end_ms)
    ticks = [Tick(t.ts, t.price, t.size, t.venue, t.trade_id) for t in store if t.symbol == MAIN]
    results["store"] = {
        "trades": len(store),
        "per_symbol": {symbol: sum(1 for t in store if t.symbol == symbol) for symbol in SYMBOLS},
        "venues": [venue for venue, _ in VENUES],
        "generated_s": time.perf_counter() - started,
    }
    log(f"{stack}: {len(store):,} trades generated in {results['store']['generated_s']:.1f} s")
    # The store is the bench's own millions of objects: full collections
    # walking it (seconds each) would be charged to whatever runs next.
    # Server processes freeze their startup objects the same way.
    gc.collect()
    gc.freeze()

    if args.ingest_only:
        minute = aggregate_ticks(ticks, RESOLUTION_MS["1m"])
    else:
        log(f"{stack}: in memory: CandleBuilder, aggregation against polars")
        results["builder"] = builder_rate(ticks[: args.memory_trades])
        results["aggregation"], minute = aggregation(ticks, args.polars_runs)

    for symbol in SYMBOLS:
        for venue, _ in VENUES:
            services.ensure_listing(venue, symbol)
    groups = chunks(store, args.batch)
    log(f"{stack}: plain bulk insert and ingest_trades, {len(store):,} trades in batches of {args.batch:,}")
    profile = args.profile.replace("STACK", stack) if args.profile else None
    results["baseline"], results["ingest"] = persisted(groups, profile)
    results["stored"] = stored_check(minute, end_ms - DAY_MS, end_ms)
    if args.ingest_only:
        results["load_at_end"] = os.getloadavg()[0]
        return results
    results["fetch_in_process"] = in_process_fetch(end_ms, 10)
    prepare_users(args.subscribers)
    del store, ticks, groups, minute
    connections.close_all()

    log(f"{stack}: starting the server")
    server = DaphneProcess(dict(os.environ), Path(os.environ["LEDGERCORE_VAR_DIR"]) / "daphne.log").start()
    try:
        log(f"{stack}: request_market_data: {args.requests} requests per case")
        results["load_before_requests"] = os.getloadavg()[0]
        results["requests"] = asyncio.run(request_latency(server.url, end_ms, args))
        path = args.live_path if args.live_path != "auto" else ("commit" if stack == "scaled" else "post")
        if args.subscribers:
            quiet: Phase = ("quiet", args.live_trades, args.live_interval)
            warmup: Phase = ("warmup", args.warmup, args.live_interval)
            log(f"{stack}: live, reference: 1 subscriber")
            results["live_reference"] = live_latency(server, path, 1, [warmup, quiet])
            busy: Phase = ("busy", args.busy_trades, 1 / args.busy_rate)
            results["live"] = live_latency(server, path, args.subscribers, [warmup, quiet, busy])
            results["live"].update(interval_s=args.live_interval, busy_rate=args.busy_rate)
    except Exception:
        print("--- server log ---", *server.logs().splitlines()[-60:], sep="\n", file=sys.stderr)
        raise
    finally:
        server.stop()
        connections.close_all()
    return results


# --- parent: environments, worker processes, report -------------------------------


def run_stack(stack: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {"dev_secret": SECRET, "LOG_LEVEL": "WARNING", "LEDGERCORE_THROTTLE_RATES": THROTTLES}
        if stack == "scaled":
            kwargs.update(postgres_url=args.postgres, redis_url=args.redis, redis_prefix="lcbench")
        log(f"{stack}: preparing a fresh database")
        with server_environment(Path(tmp), **kwargs) as env:
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", stack]
            for option in WORKER_OPTIONS:
                value = getattr(args, option)
                flag = f"--{option.replace('_', '-')}"
                if isinstance(value, bool):
                    command += [flag] if value else []
                elif value is not None:
                    command += [flag, str(value)]
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
            if done.returncode != 0 or not lines:
                raise RuntimeError(f"{stack} worker failed (exit {done.returncode}):\n{done.stdout}")
            results: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
            return results


def report(stack: str, r: dict[str, Any]) -> None:
    store = r["store"]
    mix = ", ".join(f"{symbol} {count:,}" for symbol, count in store["per_symbol"].items())
    print(f"\n== {stack} stack ({STACK_LABELS[stack]}) ==")
    print(f"store: {store['trades']:,} trades ({mix}) on {' + '.join(store['venues'])}, 24 h ending now")
    ingest_only = "requests" not in r
    print(
        f"machine load (1-min average, 2 cores): {r['load_at_start']:.1f} at the start, "
        + (
            f"{r['load_at_end']:.1f} at the end"
            if ingest_only
            else f"{r['load_before_requests']:.1f} before the requests"
        )
    )

    base, ours = r["baseline"], r["ingest"]
    print(
        f"{'persisted, batches of ' + format(ours['batch_size'], ','):52}"
        f"{'trades/s':>10}{'ratio':>8}{'batch p50':>11}{'batch p99':>11}"
    )
    for label, row in (
        (f"baseline: plain {base['method']}, no roll-ups", base),
        ("ingest_trades (5 stored roll-ups, publish)", ours),
    ):
        print(
            f"{label:52}{row['per_s']:>10,.0f}{row['per_s'] / base['per_s']:>8.2f}"
            f"{row['batch_p50_ms']:>9.0f}ms{row['batch_p99_ms']:>9.0f}ms"
        )
    s = r["stored"]
    print(
        f"stored 1m candles == in-memory aggregation: {s['equal']} ({s['candles']:,} candles; "
        f"series count {s['series_trades']:,})"
    )
    if ingest_only:
        return
    b = r["builder"]
    print(f"{'in memory: CandleBuilder, ' + str(b['resolutions']) + ' resolutions':52}{b['per_s']:>10,.0f}")

    a = r["aggregation"]
    print(
        f"aggregation of {a['trades']:,} {MAIN} trades (polars frame built in {a['frame_build_s']:.2f} s, not counted)"
    )
    print(f"{'':12}{'candles':>9}{'ours/s':>12}{'polars/s':>12}{'ratio':>8}  polars == ours")
    for resolution in AGGREGATION_RESOLUTIONS:
        x = a[resolution]
        print(
            f"{resolution:12}{x['candles']:>9,}{x['ours_per_s']:>12,.0f}{x['polars_per_s']:>12,.0f}"
            f"{x['ours_per_s'] / x['polars_per_s']:>8.3f}  {x['equal']} ({x['mismatched']} mismatched)"
        )
    print(
        f"{'request_market_data (WebSocket)':36}{'candles':>9}{'KiB':>7}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}{'in-proc p50':>13}"
    )
    for name, label in (("1m_24h", "24 h of 1m"), ("100ms_15m", "15 min of 100ms")):
        q, f = r["requests"][name], r["fetch_in_process"][name]
        print(
            f"{label + ' (' + str(q['requests']) + ' requests)':36}{q['candles']:>9,}{q['bytes'] / 1024:>7.0f}"
            f"{q['p50_ms']:>9.1f}{q['p95_ms']:>9.1f}{q['p99_ms']:>9.1f}{q['max_ms']:>9.1f}{f['p50_ms']:>13.1f}"
        )

    live = r.get("live")
    if not live:
        print("live: not measured")
        return
    ready = live["ready"]
    start, call = (
        ("commit in the worker, via Redis", "ingest")
        if live["path"] == "commit"
        else ("just before POST /api/market/trades", "POST")
    )
    print(
        f"live market:{MAIN}:{live['resolution']}, {ready['subscribers']:,} subscribers (connected in "
        f"{ready['connect_s']:.1f} s, joined in {ready['join_s']:.1f} s), from {start}:"
    )
    print(
        f"{'':34}{'trades':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'1st p50':>8}{'1st p99':>8}"
        f"{'last p50':>9}{'last p99':>9}{'missing':>8}{call + ' p50':>11}"
    )
    rows = [("1 subscriber: " + f"1 trade / {live['interval_s'] * 1000:.0f} ms", r["live_reference"].get("quiet"))]
    rows += [
        (f"{ready['subscribers']:,}: 1 trade / {live['interval_s'] * 1000:.0f} ms", live.get("quiet")),
        (f"{ready['subscribers']:,}: {live['busy_rate']:g} trades/s (conflated)", live.get("busy")),
    ]
    for label, x in rows:
        if not x:
            continue
        print(
            f"{label:34}{x['trades']:>7}{x['p50_ms']:>8.1f}{x['p99_ms']:>8.1f}{x['max_ms']:>8.1f}"
            f"{x['first_p50_ms']:>8.1f}{x['first_p99_ms']:>8.1f}{x['last_p50_ms']:>9.1f}{x['last_p99_ms']:>9.1f}"
            f"{x['missing']:>8}{x['call_p50_ms']:>11.1f}"
        )


WORKER_OPTIONS = (
    "trades",
    "batch",
    "memory_trades",
    "polars_runs",
    "requests",
    "warmup",
    "subscribers",
    "live_trades",
    "live_interval",
    "busy_trades",
    "busy_rate",
    "live_path",
    "ingest_only",
    "profile",
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", choices=["embedded", "scaled", "both"], default="both")
    p.add_argument("--trades", type=int, default=1_000_000, help=f"{MAIN} trades in the store (others: 10 %% more)")
    p.add_argument("--batch", type=int, default=10_000, help="trades per ingest_trades call")
    p.add_argument("--memory-trades", type=int, default=100_000, help="trades applied to the CandleBuilder")
    p.add_argument("--polars-runs", type=int, default=3)
    p.add_argument("--requests", type=int, default=40, help="timed requests per case")
    p.add_argument("--warmup", type=int, default=3, help="uncounted requests / live trades first")
    p.add_argument("--subscribers", type=int, default=1000, help="WebSockets in the market room (0: no live part)")
    p.add_argument("--live-trades", type=int, default=100)
    p.add_argument("--live-interval", type=float, default=0.15, help="seconds between quiet trades")
    p.add_argument("--busy-trades", type=int, default=100)
    p.add_argument("--busy-rate", type=float, default=20.0, help="trades per second in the busy phase")
    p.add_argument("--live-path", choices=["auto", "commit", "post"], default="auto")
    p.add_argument(
        "--ingest-only", action="store_true", help="only the persisted part: baseline and ingest_trades, stored check"
    )
    p.add_argument("--profile", metavar="FILE", help="cProfile ingest_trades into FILE (STACK: the stack's name)")
    add_service_arguments(p)
    p.add_argument("--clients", metavar="URL", help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = parser().parse_args()
    if args.clients:
        asyncio.run(run_clients(args))
        return
    if args.worker:
        results = worker(args.worker, args)
        print(RESULT_PREFIX + json.dumps(results), flush=True)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.subscribers + 1024)), hard))
    stacks = ["embedded", "scaled"] if args.stack == "both" else [args.stack]
    print(
        f"bench/marketdata.py: {args.trades:,} {MAIN} trades (+10 % other symbols), batches of {args.batch:,}; "
        f"{args.requests} requests per case; {args.subscribers:,} live subscribers"
    )
    everything: dict[str, Any] = {}
    for stack in stacks:
        everything[stack] = run_stack(stack, args)
        report(stack, everything[stack])
    settings = {option: getattr(args, option) for option in WORKER_OPTIONS}
    print("json " + json.dumps({**settings, "stacks": everything}))


if __name__ == "__main__":
    main()

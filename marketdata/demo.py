"""Demo market data for ``seed_demo``: the real Binance XRP-ETH fixture, and
synthetic BTC-USD and ETH-USD trades on binance and coinbase covering the
last 24 hours up to now.

The synthetic trades are a pure function of time: each second of each
(symbol, venue) has a fixed set of trades (count, offsets, sizes, ids drawn
from a hash of the second), and prices follow a fixed path plus per-venue
noise. Seeding again therefore finds the trades it made before (same ids)
and only adds the seconds that have passed since; nothing is duplicated.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections

from marketdata import services
from marketdata.feeds import replay
from marketdata.importers import read_trades
from marketdata.models import TradeSeries
from marketdata.trades import TradeInput
from realtime import protocol

FIXTURE_NAME = "XRPETH-binance-aggtrades-2019-10-11_13.json.gz"
SEED_HOURS = 24
BATCH = 50_000
VENUES = {"binance": "Binance", "coinbase": "Coinbase"}
# symbol -> (reference price, price decimals, size decimals, native symbol per venue)
SYMBOLS = {
    "BTC-USD": (64_000.0, 2, 6, {"binance": "BTCUSD", "coinbase": "BTC-USD"}),
    "ETH-USD": (3_200.0, 2, 5, {"binance": "ETHUSD", "coinbase": "ETH-USD"}),
}
_MASK = (1 << 64) - 1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeedResult:
    fixture_trades: int
    synthetic_trades: int
    inserted: int


def fixture_dir() -> Path:
    """The Binance reference data shipped in the repository (data/market, see
    its PROVENANCE.md) unless settings name another folder."""
    configured = getattr(settings, "LEDGERCORE_MARKET_FIXTURE_DIR", None)
    return Path(configured) if configured else Path(settings.BASE_DIR) / "data" / "market"


def _mix(value: int) -> int:
    """splitmix64: a fast, well-spread hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def _path(reference: float, seconds: float) -> float:
    """A smooth made-up price path: sums of slow waves, no state."""
    drift = (
        0.030 * math.sin(seconds / 86_400 * 2 * math.pi / 7)
        + 0.012 * math.sin(seconds / 86_400 * 2 * math.pi + 1.3)
        + 0.006 * math.sin(seconds / 10_800 * 2 * math.pi + 0.4)
        + 0.002 * math.sin(seconds / 1_020 * 2 * math.pi + 2.1)
        + 0.0008 * math.sin(seconds / 97 * 2 * math.pi)
    )
    return reference * math.exp(drift)


def synthetic_trades(symbol: str, venue: str, start_ms: int, end_ms: int) -> list[TradeInput]:
    """The synthetic trades of (symbol, venue) with timestamps in [start_ms, end_ms)."""
    reference, price_places, size_places, _ = SYMBOLS[symbol]
    stream = _mix(hash_text(f"{symbol}/{venue}"))
    basis = 1 + ((_mix(stream) % 41) - 20) / 100_000  # a venue's own few basis points
    price_unit = 10**price_places
    trades = []
    counts = (0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 0, 0, 0, 0)  # about 0.25 trades a second
    first, last = start_ms // 1000, -(-end_ms // 1000)
    for block in range(first // 16, last // 16 + 1):
        draws = _mix(stream ^ block)  # 4 bits per second of the block
        for slot in range(16):
            count = counts[(draws >> (4 * slot)) & 15]
            second = block * 16 + slot
            if not count or not first <= second < last:
                continue
            noises = sorted(_mix(draws + second * 31 + k) for k in range(count))
            for k, noise in enumerate(noises):
                # Offsets come from the top bits, so sorting the noises keeps
                # trade ids in time order within the second.
                ts = second * 1000 + (noise >> 54) * 1000 // 1024
                if not start_ms <= ts < end_ms:
                    continue
                mid = _path(reference, ts / 1000) * basis * (1 + ((noise % 2001) - 1000) / 4_000_000)
                price = Decimal(round(mid * price_unit)).scaleb(-price_places)
                units = 1 + (noise >> 24) % (3 * 10**size_places // 10)
                trades.append(
                    TradeInput(
                        venue,
                        symbol,
                        str(second * 10 + k),
                        ts,
                        price,
                        Decimal(units).scaleb(-size_places),
                        "buy" if (noise >> 21) & 1 else "sell",
                    )
                )
    return trades


def hash_text(text: str) -> int:
    """A stable integer of a string (Python's hash() is salted per process)."""
    value = 0
    for byte in text.encode():
        value = _mix(value ^ byte)
    return value


def _ingest(trades: list[TradeInput]) -> int:
    inserted = 0
    for start in range(0, len(trades), BATCH):
        inserted += services.ingest_trades(trades[start : start + BATCH], publish=False).inserted
    return inserted


def seed_market_data(now_ms: int | None = None) -> SeedResult:
    """Load the fixture (venue binance, XRP-ETH) if it is there, and the
    synthetic trades of the last SEED_HOURS up to ``now_ms``. Idempotent."""
    now = protocol.now_ms() if now_ms is None else now_ms
    fixture_count = inserted = 0
    fixture = fixture_dir() / FIXTURE_NAME
    if fixture.is_file():
        services.ensure_listing("binance", "XRP-ETH", native="XRPETH", venue_name=VENUES["binance"])
        trades = list(read_trades(fixture, venue="binance", symbol="XRP-ETH"))
        fixture_count = len(trades)
        inserted += _ingest(trades)
    synthetic = 0
    start = now - SEED_HOURS * 3_600_000
    for symbol, (_, _, _, natives) in SYMBOLS.items():
        for venue, name in VENUES.items():
            _, instrument = services.ensure_listing(venue, symbol, native=natives[venue], venue_name=name)
            # Every seed covers its last SEED_HOURS without a hole, so up to the
            # second of the series' latest trade all is there already.
            latest = (
                TradeSeries.objects.filter(instrument=instrument, venue__code=venue)
                .values_list("last_ts", flat=True)
                .first()
            )
            since = start if latest is None or latest < start else latest - latest % 1000
            trades = synthetic_trades(symbol, venue, since, now + 1)
            synthetic += len(trades)
            inserted += _ingest(trades)
    return SeedResult(fixture_count, synthetic, inserted)


class DemoFeed:
    """Live demo trades inside the server process (LEDGERCORE_MARKET_DEMO_FEED):
    the synthetic series continue in real time (the same pure function of
    time that seeded them, so nothing is stored twice) and the Binance
    fixture is replayed as XRP-ETH at LEDGERCORE_MARKET_REPLAY_SPEED, so that
    ``make run`` shows moving charts without network access. Runs in one
    daemon thread; trades reach live charts through ``ingest_trades``."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.stop = threading.Event()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="market-demo-feed", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        speed = float(settings.LEDGERCORE_MARKET_REPLAY_SPEED)
        fixture = fixture_dir() / FIXTURE_NAME
        replaying = speed > 0 and fixture.is_file()

        def replays() -> Iterator[tuple[float, list[TradeInput]]]:
            # Played again from the start each time it ends, under new ids.
            while True:
                run_id = f"r{protocol.now_ms():x}"
                began = time.monotonic()
                trades = read_trades(fixture, venue="binance", symbol="XRP-ETH")
                for due, batch in replay(trades, speed=speed, run_id=run_id):
                    yield began + due, batch

        if replaying:
            services.ensure_listing("binance", "XRP-ETH", native="XRPETH", venue_name=VENUES["binance"])
        replayed = replays() if replaying else None
        pending = next(replayed) if replayed is not None else None
        last = protocol.now_ms()
        while not self.stop.wait(self.interval):
            try:
                now = protocol.now_ms()
                batch: list[TradeInput] = []
                for symbol in SYMBOLS:
                    for venue in VENUES:
                        batch.extend(synthetic_trades(symbol, venue, last, now))
                last = now
                while pending is not None and replayed is not None and pending[0] <= time.monotonic():
                    batch.extend(pending[1])
                    pending = next(replayed)
                if batch:
                    services.ingest_trades(batch)
            except services.InvalidTrades:
                log.exception("demo trades refused (run manage.py seed_demo first)")
                return
            except Exception:
                log.exception("demo feed failed; continuing")
            finally:
                close_old_connections()


demo_feed = DemoFeed()


def start_demo_feed() -> None:
    """The demo feed of a server process, when LEDGERCORE_MARKET_DEMO_FEED
    (a background task: marketdata's AppConfig.ready registers it)."""
    if settings.LEDGERCORE_MARKET_DEMO_FEED:
        demo_feed.start()

"""Bulk ingestion: stored candles equal candles computed here, straight from
the raw trades, whatever the batches, their order, ties within a
millisecond, trade-id forms and duplicates (PostgreSQL: COPY and one
set-based statement; SQLite: executemany and a merge of the touched
candles)."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest

from marketdata import services
from marketdata.models import Trade, TradeSeries
from marketdata.resolutions import RESOLUTION_MS, STORED_RESOLUTIONS
from marketdata.trades import TradeInput

SYMBOL = "BTC-USD"
VENUES = ("binance", "kraken")
START = 1_700_000_000_000
ARABIC_ONE = "\u0661"  # a digit to str.isdigit, but not ASCII: ordered as text


def order(trade: TradeInput) -> tuple[Any, ...]:
    """The documented candle order within one venue, written out here:
    timestamp, then ids of ASCII digits by their number (then their text)
    before any other id, other ids by code point."""
    digits = all("0" <= char <= "9" for char in trade.trade_id)
    return (trade.ts, 0 if digits else 1, int(trade.trade_id) if digits else 0, trade.trade_id)


def expected_candles(trades: list[TradeInput], venue: str, resolution: str) -> list[tuple[Any, ...]]:
    size = RESOLUTION_MS[resolution]
    buckets: dict[int, list[TradeInput]] = defaultdict(list)
    for trade in trades:
        if trade.venue == venue:
            buckets[trade.ts - trade.ts % size].append(trade)
    out = []
    for start in sorted(buckets):
        group = sorted(buckets[start], key=order)
        prices = [trade.price for trade in group]
        volume = sum((trade.size for trade in group), Decimal(0))
        first, last = group[0], group[-1]
        out.append(
            (
                start,
                first.price,
                max(prices),
                min(prices),
                last.price,
                volume,
                len(group),
                first.trade_id,
                last.trade_id,
            )
        )
    return out


def stored_candles(venue: str, resolution: str, end: int) -> list[tuple[Any, ...]]:
    step = 10_000 * RESOLUTION_MS[resolution]
    out = []
    for start in range(START - START % RESOLUTION_MS[resolution], end, step):
        for c in services.load_candles(SYMBOL, resolution, venues=[venue], start_ms=start, end_ms=start + step):
            out.append(
                (c.timestamp, c.open, c.high, c.low, c.close, c.volume, c.trades, c.open_key[2][2], c.close_key[2][2])
            )
    return out


def trade_ids(rng: random.Random, count: int) -> list[str]:
    """Unique ids of every form: numbers of any length, leading zeros (``7``
    and ``007`` are different trades, ordered as equal numbers by text),
    letters, punctuation, non-ASCII (and non-ASCII digits, which are not
    numbers here)."""
    ids: set[str] = set()
    while len(ids) < count:
        form = rng.randrange(6)
        if form == 0:
            ids.add(str(rng.randrange(1, 10 ** rng.randrange(1, 30))))
        elif form == 1:
            ids.add("0" * rng.randrange(1, 3) + str(rng.randrange(0, 1000)))
        elif form == 2:
            ids.add(str(rng.randrange(0, 1000)))
        elif form == 3:
            ids.add("".join(rng.choice("abcXYZ-_:9") for _ in range(rng.randrange(1, 8))))
        elif form == 4:
            ids.add(rng.choice(["é", "ü", "z", "Ω", ARABIC_ONE + "\u0662", "²"]) + str(rng.randrange(100)))
        else:
            ids.add(str(rng.randrange(10**18, 10**19)))
    return sorted(ids)


def random_trades(rng: random.Random, count: int, span_ms: int) -> list[TradeInput]:
    out = []
    for venue in VENUES:
        for trade_id in trade_ids(rng, count // len(VENUES)):
            # Few distinct milliseconds: many trades tie on the timestamp,
            # so the trade id decides open and close.
            ts = START + rng.randrange(0, 4_000) * (span_ms // 4_000)
            price = Decimal(rng.randrange(1, 10**7)).scaleb(-rng.randrange(0, 6))
            size = Decimal(rng.randrange(1, 10**9)).scaleb(-rng.randrange(0, 12))
            out.append(TradeInput(venue, SYMBOL, trade_id, ts, price, size, rng.choice(("buy", "sell"))))
    return out


def assert_candles_exact(trades: list[TradeInput], end: int) -> None:
    for venue in VENUES:
        for resolution in (*STORED_RESOLUTIONS, "1m", "1h", "1d"):
            assert stored_candles(venue, resolution, end) == expected_candles(trades, venue, resolution), (
                venue,
                resolution,
            )


@pytest.mark.django_db
def test_a_large_out_of_order_batch_with_duplicates_gives_the_candles_of_the_raw_trades() -> None:
    for venue in VENUES:
        services.ensure_listing(venue, SYMBOL)
    rng = random.Random(19)
    span = 6 * 3_600_000
    trades = random_trades(rng, 12_000, span)
    rng.shuffle(trades)
    # One large batch of a third of the trades, with repeats inside it.
    first = trades[: len(trades) // 3]
    result = services.ingest_trades(first + rng.sample(first, 500))
    assert (result.inserted, result.duplicates) == (len(first), 500)
    # The rest in uneven batches in random order, each replaying trades
    # already stored and some of its own twice: every batch merges into
    # candles stored before, earlier and later in the same buckets.
    rest = trades[len(first) :]
    cuts = sorted(rng.sample(range(1, len(rest)), 6))
    batches = [rest[a:b] for a, b in zip([0, *cuts], [*cuts, len(rest)], strict=True)]
    rng.shuffle(batches)
    inserted = len(first)
    for batch in batches:
        replay = rng.sample(trades[: inserted // 2], 300) + batch[:50]
        mixed = batch + replay
        rng.shuffle(mixed)
        result = services.ingest_trades(mixed)
        inserted += result.inserted
    assert inserted == len(trades) == Trade.objects.count()
    counted = TradeSeries.objects.order_by("venue__code").values_list("trades", "first_ts", "last_ts")
    assert list(counted) == [
        (
            sum(1 for t in trades if t.venue == venue),
            min(t.ts for t in trades if t.venue == venue),
            max(t.ts for t in trades if t.venue == venue),
        )
        for venue in VENUES
    ]
    assert_candles_exact(trades, START + span + 86_400_000)


@pytest.mark.django_db
def test_trades_of_one_millisecond_arriving_one_by_one_move_open_and_close_by_trade_id() -> None:
    ids = ["10", "9", "009", "0", "00", "a", "b-1", "Z", "é", ARABIC_ONE, "99999999999999999999999999"]
    rng = random.Random(7)
    for attempt, symbol in enumerate(("BTC-USD", "ETH-USD", "SOL-USD")):  # same ids: one symbol each
        services.ensure_listing("binance", symbol)
        rng.shuffle(ids)
        ts = START + attempt * 3_600_000
        trades = [
            TradeInput("binance", symbol, trade_id, ts, Decimal(100 + n), Decimal("0.5"), "buy")
            for n, trade_id in enumerate(ids)
        ]
        for trade in trades:  # each alone: every candle is merged into the stored one
            services.ingest_trades([trade])
        assert services.ingest_trades(trades).inserted == 0  # all again: nothing changes
        candle = services.load_candles(symbol, "1s", venues=["binance"], start_ms=ts, end_ms=ts + 1000)[0]
        # Digits first by number ("0" before "00": equal numbers by text),
        # then other ids by code point: Z < a < b-1 < é < ARABIC_ONE (a digit, not ASCII).
        assert (candle.open_key[2][2], candle.close_key[2][2]) == ("0", ARABIC_ONE)
        assert (candle.trades, candle.volume) == (len(ids), Decimal("5.5"))
        opened = next(t for t in trades if t.trade_id == "0")
        closed = next(t for t in trades if t.trade_id == ARABIC_ONE)
        assert (candle.open, candle.close) == (opened.price, closed.price)


@pytest.mark.django_db
def test_a_value_repeated_in_a_batch_is_judged_by_its_value_at_every_position() -> None:
    services.ensure_listing("binance", SYMBOL)
    good = TradeInput("binance", SYMBOL, "1", START, Decimal("60000.5"), Decimal("0.1"), "buy")
    too_precise = Decimal("1.23456789012345678")
    with pytest.raises(services.InvalidTrades) as refused:
        services.ingest_trades(
            [
                good,
                good._replace(trade_id="2", price=too_precise),
                good._replace(trade_id="3", size=too_precise),
                good._replace(trade_id="4", price=too_precise),
            ]
        )
    assert set(refused.value.errors) == {"1.price", "2.size", "3.price"}
    # Equal values written differently are one value: both stored exactly.
    same = [
        good,
        good._replace(trade_id="2", price=Decimal("60000.500000000000000000"), size=Decimal("1E-1")),
    ]
    assert services.ingest_trades(same).inserted == 2
    stored = sorted(Trade.objects.values_list("trade_id", "price", "size"))
    assert stored == [("1", Decimal("60000.5"), Decimal("0.1")), ("2", Decimal("60000.5"), Decimal("0.1"))]

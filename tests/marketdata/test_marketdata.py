"""Market data: trades in (idempotent, exact roll-ups), candles out, checked
against Binance's own candles for the same trades; importers, REST
ingestion, admin and demo data."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from marketdata import services
from marketdata.candles import Candle, CandleBuilder, Tick, aggregate_ticks, rollup, trade_id_key
from marketdata.demo import FIXTURE_NAME, SEED_HOURS, fixture_dir, seed_market_data
from marketdata.importers import TradeFileError, read_trades
from marketdata.models import Candle as StoredCandle
from marketdata.models import Instrument, Trade, TradeSeries, Venue, VenueSymbol
from marketdata.resolutions import RESOLUTION_MS, RESOLUTIONS, divides, duration_ms, source_resolution
from marketdata.trades import TradeInput
from marketdata.windows import MAX_CANDLES, TooManyCandles, WindowError, resolve_window
from tests.factories import UserFactory
from tests.wsclient import dev_token, unique

AGGTRADES = fixture_dir() / FIXTURE_NAME
KLINES = fixture_dir() / "XRPETH-binance-klines-1m-2019-10-11_13.json"
DAY = 86_400_000
FIXTURE_START = 1_570_752_000_000  # 2019-10-11T00:00Z, the day of the first trade
FIXTURE_END = FIXTURE_START + 3 * DAY
# PROVENANCE.md of the fixture: non-empty buckets per resolution.
BUCKET_COUNTS = {
    "100ms": 9427,
    "250ms": 8451,
    "500ms": 7812,
    "1s": 7220,
    "5s": 5620,
    "15s": 4356,
    "30s": 3463,
    "1m": 2469,
    "5m": 706,
    "15m": 238,
    "30m": 119,
    "1h": 60,
    "4h": 15,
    "1d": 3,
}


def fixture_trades(venue: str = "binance", symbol: str = "XRP-ETH") -> list[TradeInput]:
    return list(read_trades(AGGTRADES, venue=venue, symbol=symbol))


def import_fixture() -> services.IngestResult:
    services.ensure_listing("binance", "XRP-ETH", native="XRPETH")
    return services.ingest_trades(fixture_trades())


def all_candles(symbol: str, resolution: str, venues: list[str] | None = None) -> list[Candle]:
    """Every candle of the fixture's days, in requests under the cap."""
    step = MAX_CANDLES * RESOLUTION_MS[resolution]
    out: list[Candle] = []
    for start in range(FIXTURE_START, FIXTURE_END, step):
        out += services.load_candles(
            symbol, resolution, venues=venues, start_ms=start, end_ms=min(start + step, FIXTURE_END)
        )
    return out


def stored_rows() -> list[tuple]:
    return list(
        StoredCandle.objects.order_by("instrument_id", "venue_id", "resolution", "bucket").values_list(
            "instrument_id",
            "venue_id",
            "resolution",
            "bucket",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "trades",
            "open_ts",
            "open_trade_id",
            "close_ts",
            "close_trade_id",
        )
    )


def ticks_of(trades: list[TradeInput]) -> list[Tick]:
    return [Tick(t.ts, t.price, t.size, t.venue, t.trade_id) for t in trades]


# ------------------------------------------------------------ the Binance fixture


@pytest.mark.django_db
def test_candles_from_the_fixture_equal_binance_1m_klines_for_every_traded_minute():
    assert import_fixture().inserted == 12_477
    klines = json.loads(KLINES.read_text())
    ours = {candle.timestamp: candle for candle in all_candles("XRP-ETH", "1m")}
    traded = [row for row in klines if row[5] > 0]
    assert len(traded) == 2469
    for open_time, *ohlcv in traded:
        candle = ours[open_time]
        expected = [Decimal(str(value)) for value in ohlcv]
        assert [candle.open, candle.high, candle.low, candle.close, candle.volume] == expected, open_time
    assert set(ours) == {row[0] for row in traded}  # no bucket of ours that Binance lacks
    assert sum(candle.volume for candle in ours.values()) == Decimal(5_545_735)
    assert sum(candle.trades for candle in ours.values()) == 12_477  # aggTrades, not raw fills


@pytest.mark.django_db
def test_bucket_counts_of_every_resolution_match_the_fixture_provenance():
    import_fixture()
    counts = {resolution: len(all_candles("XRP-ETH", resolution)) for resolution in RESOLUTIONS}
    assert counts == BUCKET_COUNTS


@pytest.mark.django_db
def test_every_resolution_equals_the_rollup_of_every_finer_one_and_a_fresh_aggregation():
    trades = fixture_trades()
    import_fixture()
    served = {resolution: all_candles("XRP-ETH", resolution) for resolution in RESOLUTIONS}
    for coarse in RESOLUTIONS:
        size = RESOLUTION_MS[coarse]
        assert served[coarse] == aggregate_ticks(ticks_of(trades), size), coarse
        for fine in RESOLUTIONS:
            if fine != coarse and divides(fine, coarse):
                assert rollup(served[fine], size) == served[coarse], (fine, coarse)


@pytest.mark.django_db
def test_open_and_close_follow_trade_id_order_within_a_millisecond() -> None:
    import_fixture()
    trades = fixture_trades()
    by_second: dict[int, list[TradeInput]] = {}
    for trade in trades:
        by_second.setdefault(trade.ts - trade.ts % 1000, []).append(trade)
    tied = 0
    for candle in all_candles("XRP-ETH", "1s"):
        group = sorted(by_second[candle.timestamp], key=lambda t: (t.ts, int(t.trade_id)))
        if len(group) > 1 and (group[0].ts == group[1].ts or group[-1].ts == group[-2].ts):
            tied += 1
        assert (candle.open, candle.close) == (group[0].price, group[-1].price)
    assert tied > 100  # buckets whose open or close needed the trade id


# ------------------------------------------------------------ idempotent ingestion


@pytest.mark.django_db
def test_reimporting_stores_nothing_twice_and_leaves_candles_unchanged():
    first = import_fixture()
    rows = stored_rows()
    again = import_fixture()
    assert (first.inserted, first.duplicates) == (12_477, 0)
    assert (again.received, again.inserted, again.duplicates) == (12_477, 0, 12_477)
    assert again.new_trades == {}
    assert Trade.objects.count() == 12_477
    assert stored_rows() == rows


@pytest.mark.django_db
def test_overlapping_batches_in_any_order_give_the_same_stored_candles_as_one_import():
    import_fixture()
    reference = stored_rows()
    Trade.objects.all().delete()
    StoredCandle.objects.all().delete()
    trades = fixture_trades()
    rng = random.Random(5)
    chunks = [trades[i : i + 700] for i in range(0, len(trades), 700)]
    rng.shuffle(chunks)
    inserted = 0
    for chunk in chunks:
        replay = rng.sample(trades, 50)  # trades already stored, or not yet: both must be exact
        result = services.ingest_trades(chunk + replay + chunk[:10])
        inserted += result.inserted
    assert inserted == 12_477 == Trade.objects.count()
    assert stored_rows() == reference


@pytest.mark.django_db
def test_ingest_reports_the_new_trades_per_symbol_in_time_order():
    services.ensure_listing("binance", "XRP-ETH")
    trades = fixture_trades()[:300]
    result = services.ingest_trades(list(reversed(trades)))
    assert list(result.new_trades) == ["XRP-ETH"]
    ticks = result.new_trades["XRP-ETH"]
    assert [t.ts for t in ticks] == sorted(t.ts for t in trades)
    assert {t.trade_id for t in ticks} == {t.trade_id for t in trades}


@pytest.mark.django_db
def test_each_series_reports_a_growing_watermark_and_a_summary():
    services.ensure_listing("binance", "XRP-ETH")
    services.ensure_listing("coinbase", "XRP-ETH")
    trades = fixture_trades()
    first = services.ingest_trades(trades[:5000])
    [only] = first.series
    assert (only.symbol, only.venue, len(only.ticks)) == ("XRP-ETH", "binance", 5000)
    assert only.watermark == Trade.objects.filter(venue__code="binance").order_by("-id").values_list("id", flat=True)[0]
    mixed = trades[4000:9000] + [t._replace(venue="coinbase") for t in trades[:10]]
    second = services.ingest_trades(mixed)
    assert [(s.venue, len(s.ticks)) for s in second.series] == [("binance", 4000), ("coinbase", 10)]
    assert second.series[0].watermark > only.watermark
    assert services.ingest_trades(trades[:9000]).series == []  # nothing new: nothing to publish
    summary = TradeSeries.objects.get(venue__code="binance")
    assert (summary.trades, summary.first_ts, summary.last_ts) == (9000, trades[0].ts, trades[8999].ts)
    assert summary.last_row_id == second.series[0].watermark


@pytest.mark.django_db
def test_live_seed_is_the_forming_candle_and_the_watermarks_it_counts():
    services.ensure_listing("binance", "BTC-USD")
    services.ensure_listing("coinbase", "BTC-USD")
    now = 1_700_000_123_456
    first = services.ingest_trades([_trade("binance", "1", now - 400, "10"), _trade("coinbase", "1", now - 5, "12")])
    forming, watermarks = services.live_seed("BTC-USD", "1s")
    assert forming is not None and (forming.timestamp, forming.open, forming.close, forming.trades) == (
        now - now % 1000,
        Decimal(10),
        Decimal(12),
        2,
    )
    assert watermarks == {s.venue: s.watermark for s in first.series}
    later = services.ingest_trades([_trade("binance", "2", now + 1, "11")])
    assert later.series[0].watermark > watermarks["binance"]  # a live chart applies it exactly once
    forming, watermarks = services.live_seed("BTC-USD", "1m")
    assert watermarks["binance"] == later.series[0].watermark
    assert forming is not None and (forming.timestamp, forming.trades) == (now - now % 60_000, 3)
    # The latest trade's bucket, however long ago: a 100 ms chart seeded just
    # after its bucket ended continues it rather than starting it again.
    forming, _ = services.live_seed("BTC-USD", "100ms", since_ms=now - 30_000)
    assert forming is not None and (forming.timestamp, forming.trades) == (now + 1 - (now + 1) % 100, 2)
    # Not a bar from before the chart's window.
    assert services.live_seed("BTC-USD", "100ms", since_ms=now + 2) == (None, watermarks)


@pytest.mark.django_db
def test_a_batch_with_an_invalid_trade_is_refused_whole_with_reasons():
    services.ensure_listing("binance", "BTC-USD")
    good = TradeInput("binance", "BTC-USD", "1", 1_700_000_000_000, Decimal("60000.5"), Decimal("0.1"), "buy")
    bad = [
        good._replace(trade_id="2", venue="nowhere"),
        good._replace(trade_id="3", symbol="DOGE-USD"),
        good._replace(trade_id="4", price=Decimal("1.23456789012345678")),  # 18 significant digits
        good._replace(trade_id="5", size=Decimal("-1")),
        good._replace(trade_id="6", side="up"),
        good._replace(trade_id="7", price=Decimal("0.0000000000000000001")),  # 19 places
        good._replace(trade_id="8", ts=-5),
        good._replace(trade_id="9", price=Decimal("NaN")),
        good._replace(trade_id="10", venue=["binance"], side={"buy"}, size=0.5),  # wrong types, unhashable
    ]
    with pytest.raises(services.InvalidTrades) as refused:
        services.ingest_trades([good, *bad])
    assert set(refused.value.errors) == {
        "1.venue",
        "2.symbol",
        "3.price",
        "4.size",
        "5.side",
        "6.price",
        "7.timestamp",
        "8.price",
        "9.venue",
        "9.side",
        "9.size",
    }
    assert "significant digits" in refused.value.errors["3.price"][0]
    assert Trade.objects.count() == 0 and StoredCandle.objects.count() == 0


@pytest.mark.django_db
def test_exact_values_survive_the_store_at_fifteen_digits():
    services.ensure_listing("binance", "BTC-USD")
    values = [Decimal("123456789.123456"), Decimal("0.000123456789012345"), Decimal("99999999999999900000")]
    trades = [
        TradeInput("binance", "BTC-USD", str(i), 1_700_000_000_000 + i, value, value, "buy")
        for i, value in enumerate(values)
    ]
    services.ingest_trades(trades)
    stored = list(Trade.objects.order_by("ts").values_list("price", "size"))
    assert [p for p, _ in stored] == values and [s for _, s in stored] == values
    candles = services.load_candles("BTC-USD", "1s", start_ms=1_700_000_000_000, end_ms=1_700_000_001_000)
    assert candles[0].volume == Decimal("100000000000123356789.123579456789012345")  # 39 digits, exact


@pytest.mark.django_db
def test_native_symbols_resolve_to_their_instrument():
    services.ensure_listing("binance", "XRP-ETH", native="XRPETH")
    trade = TradeInput("binance", "XRPETH", "42", 1_570_752_011_620, Decimal("0.0014"), Decimal("1"), "sell")
    result = services.ingest_trades([trade])
    assert list(result.new_trades) == ["XRP-ETH"]
    assert Trade.objects.get().instrument.symbol == "XRP-ETH"
    assert VenueSymbol.objects.get().native == "XRPETH"


# ------------------------------------------------------------ venues


def _trade(venue: str, trade_id: str, ts: int, price: str, size: str = "1") -> TradeInput:
    return TradeInput(venue, "BTC-USD", trade_id, ts, Decimal(price), Decimal(size), "buy")


@pytest.mark.django_db
def test_venues_merge_exactly_with_ties_broken_by_venue_then_trade_id():
    for venue in ("coinbase", "binance", "kraken"):
        services.ensure_listing(venue, "BTC-USD")
    t = 1_700_000_040_000  # a minute boundary
    trades = [
        _trade("coinbase", "7", t, "101", "0.5"),  # same ms as binance 10: binance opens (venue order)
        _trade("binance", "10", t, "100", "2"),
        _trade("binance", "9", t, "99", "1"),  # same ms and venue: 9 < 10 numerically, so 9 opens
        _trade("kraken", "b-2", t + 59_999, "103"),  # last ms of the minute, tied with coinbase 8
        _trade("coinbase", "8", t + 59_999, "104"),  # "coinbase" < "kraken": kraken closes
        _trade("kraken", "b-1", t + 30_000, "98.5", "0.25"),
    ]
    services.ingest_trades(list(reversed(trades)))
    merged = services.aggregate_candles("BTC-USD", "1m", start_ms=t, end_ms=t + 60_000)
    assert merged == [
        {
            "timestamp": t,
            "open": Decimal("99"),
            "high": Decimal("104"),
            "low": Decimal("98.5"),
            "close": Decimal("103"),
            "volume": Decimal("5.75"),
            "trades": 6,
        }
    ]
    expected = aggregate_ticks(ticks_of(trades), RESOLUTION_MS["1m"])
    for resolution in ("100ms", "1s", "5s", "30s", "1m", "1h", "1d"):
        size = RESOLUTION_MS[resolution]
        start = t - t % size
        got = services.load_candles("BTC-USD", resolution, start_ms=start, end_ms=start + max(size, 120_000))
        assert got == aggregate_ticks(ticks_of(trades), RESOLUTION_MS[resolution]), resolution
    assert services.load_candles("BTC-USD", "1m", start_ms=t, end_ms=t + 60_000) == expected


@pytest.mark.django_db
def test_the_venues_filter_returns_only_those_venues():
    for venue in ("coinbase", "binance", "kraken"):
        services.ensure_listing(venue, "BTC-USD")
    t = 1_700_000_040_000
    services.ingest_trades(
        [
            _trade("binance", "1", t + 10, "100", "1"),
            _trade("coinbase", "1", t + 20, "200", "2"),
            _trade("kraken", "1", t + 30, "300", "3"),
        ]
    )
    for resolution in ("250ms", "1m"):
        only = services.aggregate_candles("BTC-USD", resolution, venues=["coinbase"], start_ms=t, end_ms=t + 60_000)
        assert [(c["open"], c["volume"]) for c in only] == [(Decimal(200), Decimal(2))]
        pair = services.aggregate_candles("BTC-USD", "1m", venues=["kraken", "binance"], start_ms=t, end_ms=t + 60_000)
        assert [(c["open"], c["close"], c["volume"], c["trades"]) for c in pair] == [
            (Decimal(100), Decimal(300), Decimal(4), 2)
        ]
    with pytest.raises(services.UnknownVenue):
        services.aggregate_candles("BTC-USD", "1m", venues=["nowhere"], start_ms=t, end_ms=t + 60_000)
    with pytest.raises(services.UnknownSymbol):
        services.aggregate_candles("DOGE-USD", "1m", start_ms=t, end_ms=t + 60_000)


def test_numeric_trade_ids_order_as_numbers_and_before_other_ids():
    assert sorted(["10", "9", "a", "009", "b-1"], key=trade_id_key) == ["009", "9", "10", "a", "b-1"]


# ------------------------------------------------------------ candles in memory


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5_000),
            st.integers(1, 10_000),
            st.integers(1, 500),
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 30),
        ),
        min_size=1,
        max_size=60,
    ),
    st.randoms(use_true_random=False),
)
def test_candles_do_not_depend_on_arrival_order_and_roll_up_exactly(rows, rng):
    ticks = list(
        {
            (venue, tid): Tick(ts, Decimal(p).scaleb(-2), Decimal(s).scaleb(-3), venue, str(tid))
            for ts, p, s, venue, tid in rows
        }.values()
    )
    shuffled = ticks[:]
    rng.shuffle(shuffled)
    for resolution in ("100ms", "250ms", "500ms", "1s", "5s"):
        size = RESOLUTION_MS[resolution]
        candles = aggregate_ticks(ticks, size)
        assert aggregate_ticks(shuffled, size) == candles
        assert rollup(aggregate_ticks(ticks, 100 if size % 100 == 0 else 50), size) == candles
        per_venue = [c for venue in "abc" for c in aggregate_ticks([t for t in ticks if t.venue == venue], size)]
        assert rollup(per_venue, size) == candles
        assert sum(c.trades for c in candles) == len(ticks)


def test_the_candle_builder_replays_trades_into_the_same_candles_for_every_resolution() -> None:
    trades = ticks_of(fixture_trades())
    builder = CandleBuilder()
    finished: dict[str, list[Candle]] = {resolution: [] for resolution in RESOLUTIONS}
    for tick in trades:
        for resolution, candle in builder.apply(tick):
            finished[resolution].append(candle)
    for resolution in RESOLUTIONS:
        forming = builder.forming(resolution)
        assert forming is not None
        assert finished[resolution] + [forming] == aggregate_ticks(trades, RESOLUTION_MS[resolution]), resolution
    assert builder.late_trades == 0


def test_the_candle_builder_never_moves_back():
    builder = CandleBuilder(["1s"])
    builder.apply(Tick(5_000, Decimal(1), Decimal(1), "a", "1"))
    closed = builder.apply(Tick(6_200, Decimal(2), Decimal(1), "a", "2"))
    assert [(r, c.timestamp, c.close) for r, c in closed] == [("1s", 5_000, Decimal(1))]
    assert builder.apply(Tick(5_900, Decimal(9), Decimal(1), "a", "3")) == []  # late for 1s
    forming = builder.forming("1s")
    assert forming is not None and (forming.timestamp, forming.high, forming.trades) == (6_000, Decimal(2), 1)
    assert builder.late_trades == 1
    builder.seed("1s", Candle.first(5_000, Decimal(7), Decimal(1), (5_000, "a", trade_id_key("0"))))
    assert builder.forming("1s").timestamp == 6_000  # an older stored bucket does not replace the forming one


@pytest.mark.django_db
def test_forming_candle_is_the_stored_state_of_the_current_bucket():
    services.ensure_listing("binance", "BTC-USD")
    now = 1_700_000_123_456
    services.ingest_trades([_trade("binance", "1", now - 400, "10"), _trade("binance", "2", now - 100, "11")])
    candle = services.forming_candle("BTC-USD", "1s", at_ms=now)
    assert candle is not None and (candle.timestamp, candle.open, candle.close, candle.trades) == (
        1_700_000_123_000,
        Decimal(10),
        Decimal(11),
        2,
    )
    assert services.forming_candle("BTC-USD", "100ms", at_ms=now) is None


# ------------------------------------------------------------ windows


NOW = 1_700_000_007_500  # 22:13:27.500 UTC


def test_a_duration_window_is_the_last_buckets_up_to_the_forming_one():
    window = resolve_window("15m", "1m", NOW)
    assert window.buckets == 15
    assert window.end_ms == NOW - NOW % 60_000 + 60_000  # includes the forming minute
    assert resolve_window("24h", "1m", NOW).buckets == 1440
    assert resolve_window("15m", "100ms", NOW).buckets == 9000
    assert resolve_window("100ms", "1d", NOW).buckets == 1  # shorter than a bucket: the forming one


def test_a_range_window_selects_candles_by_open_time():
    window = resolve_window({"from": 1_000_030_000, "to": 1_000_200_000}, "1m", NOW)
    assert (window.start_ms, window.end_ms, window.buckets) == (1_000_020_000 + 60_000, 1_000_200_000, 2)


def test_without_a_window_the_last_500_buckets_are_served():
    assert resolve_window(None, "1s", NOW).buckets == 500


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ("15 minutes", "window"),
        ("0m", "window"),
        ("-5m", "window"),
        ("", "window"),
        ({"from": 10}, "window.to"),
        ({"from": 10, "to": 5}, "window"),
        ({"from": "10", "to": 20}, "window.from"),
        ({"from": 1, "to": 2, "step": 3}, "window.step"),
        ([1, 2], "window"),
    ],
)
def test_malformed_windows_are_refused_naming_the_field(window, field):
    with pytest.raises(WindowError) as refused:
        resolve_window(window, "1m", NOW)
    assert field in refused.value.errors


def test_a_window_of_too_many_candles_says_how_to_narrow_it():
    with pytest.raises(TooManyCandles) as refused:
        resolve_window("24h", "1s", NOW)
    message = str(refused.value)
    assert "86400 buckets of 1s" in message and "at most 10000" in message
    assert "2h46m40s at 1s" in message and "resolution 15s or coarser" in message
    assert resolve_window("2h", "1s", NOW).buckets == 7200


def test_durations_and_stored_sources():
    assert [duration_ms(text) for text in ("250ms", "15s", "24h", "7d", "1w")] == [
        250,
        15_000,
        86_400_000,
        604_800_000,
        604_800_000,
    ]
    assert {r: source_resolution(r) for r in RESOLUTIONS} == {
        "100ms": None,
        "250ms": None,
        "500ms": None,
        "1s": "1s",
        "5s": "5s",
        "15s": "5s",
        "30s": "5s",
        "1m": "1m",
        "5m": "1m",
        "15m": "15m",
        "30m": "15m",
        "1h": "15m",
        "4h": "4h",
        "1d": "4h",
    }


# ------------------------------------------------------------ importers


def write_binance_csv(path: Path, trades: list[TradeInput], *, header: bool, micros: bool = False) -> None:
    rows = []
    for t in trades:
        ts = t.ts * 1000 + 123 if micros else t.ts
        maker = "True" if t.side == "sell" else "False"
        rows.append([t.trade_id, str(t.price), str(t.size), t.trade_id, t.trade_id, str(ts), maker, "True"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(
            ["agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker"]
        )
        rows = [row[:7] for row in rows]
    writer.writerows(rows)
    text = buffer.getvalue()
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(path.name.removesuffix(".zip") + ".csv", text)
    elif path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "header", "micros"),
    [
        ("XRPETH-aggTrades-2019-10.csv", False, False),
        ("XRPETH-aggTrades-2019-10.zip", False, False),
        ("XRPETH-aggTrades-2019-10.csv.gz", True, False),
        ("XRPETH-aggTrades-2025-01.zip", False, True),
    ],
)
def test_binance_csv_files_import_to_the_same_candles_as_the_json_fixture(tmp_path, name, header, micros):
    trades = fixture_trades()
    path = tmp_path / name
    write_binance_csv(path, trades, header=header, micros=micros)
    out = io.StringIO()
    call_command("import_trades", str(path), "--venue", "csvvenue", "--symbol", "XRP-ETH", stdout=out)
    assert "12477 trades read, 12477 new" in out.getvalue()
    import_fixture()
    for resolution in ("1s", "1m"):
        from_csv = all_candles("XRP-ETH", resolution, venues=["csvvenue"])
        from_json = all_candles("XRP-ETH", resolution, venues=["binance"])
        strip = [(c.timestamp, c.open, c.high, c.low, c.close, c.volume, c.trades) for c in from_csv]
        assert strip == [(c.timestamp, c.open, c.high, c.low, c.close, c.volume, c.trades) for c in from_json]


@pytest.mark.django_db
def test_import_command_is_idempotent_and_records_the_native_symbol(capsys):
    for _ in range(2):
        call_command("import_trades", str(AGGTRADES), "--symbol", "XRP-ETH", "--native", "XRPETH")
    out = capsys.readouterr().out
    assert "12477 trades read, 12477 new, 0 already stored" in out
    assert "12477 trades read, 0 new, 12477 already stored" in out
    assert Trade.objects.count() == 12_477
    assert VenueSymbol.objects.get(venue__code="binance").native == "XRPETH"


def test_binance_spot_trades_csv_without_header_is_read(tmp_path):
    path = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    path.write_text(
        "100,42000.10,0.005,210.0005,1704067200000,True,True\n101,42000.20,0.010,420.002,1704067200001,False,True\n"
    )
    trades = list(read_trades(path, venue="binance", symbol="BTC-USDT"))
    assert trades == [
        TradeInput("binance", "BTC-USDT", "100", 1704067200000, Decimal("42000.10"), Decimal("0.005"), "sell"),
        TradeInput("binance", "BTC-USDT", "101", 1704067200001, Decimal("42000.20"), Decimal("0.010"), "buy"),
    ]


@pytest.mark.django_db
def test_import_command_reports_a_broken_file(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("1,0.1,5,1,1,1570752011620,True,True\n2,oops,5,2,2,1570752011621,True,True\n")
    with pytest.raises(CommandError, match="not a decimal number"):
        call_command("import_trades", str(path), "--symbol", "XRP-ETH")
    with pytest.raises(TradeFileError):
        list(read_trades(path, venue="binance", symbol="XRP-ETH"))
    with pytest.raises(CommandError, match="BASE-QUOTE"):
        call_command("import_trades", str(path), "--symbol", "XRPETH")


# ------------------------------------------------------------ REST ingestion


def rest_trades(count: int, first_id: int = 1) -> dict:
    return {
        "trades": [
            {
                "venue": "binance",
                "symbol": "BTC-USD",
                "id": first_id + i,
                "timestamp": 1_700_000_000_000 + i * 250,
                "price": "60000.25",
                "size": "0.001",
                "side": "buy" if i % 2 else "sell",
            }
            for i in range(count)
        ]
    }


def bearer(username: str, *, staff: bool = False, permission: bool = False) -> APIClient:
    user = UserFactory.create(username=username, staff=staff)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="add_trade", content_type__app_label="marketdata"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {dev_token(username)}")
    return client


@pytest.mark.django_db
def test_rest_ingestion_needs_a_token_of_staff_or_the_add_trade_permission():
    services.ensure_listing("binance", "BTC-USD")
    assert APIClient().post("/api/market/trades", rest_trades(1), format="json").status_code in (401, 403)
    refused = bearer(unique("plain")).post("/api/market/trades", rest_trades(1), format="json")
    assert refused.status_code == 403
    producer = bearer(unique("producer"), permission=True).post("/api/market/trades", rest_trades(2), format="json")
    assert producer.status_code == 200, producer.content
    staff = bearer(unique("ops"), staff=True).post("/api/market/trades", rest_trades(3), format="json")
    assert staff.json() == {"received": 3, "inserted": 1, "duplicates": 2}
    assert Trade.objects.count() == 3


@pytest.mark.django_db
def test_rest_ingestion_is_idempotent_and_updates_candles():
    services.ensure_listing("binance", "BTC-USD")
    client = bearer(unique("producer"), permission=True)
    first = client.post("/api/market/trades", rest_trades(8), format="json")
    again = client.post("/api/market/trades", rest_trades(8), format="json")
    assert first.json() == {"received": 8, "inserted": 8, "duplicates": 0}
    assert again.json() == {"received": 8, "inserted": 0, "duplicates": 8}
    candles = services.aggregate_candles("BTC-USD", "1s", start_ms=1_700_000_000_000, end_ms=1_700_000_002_000)
    assert [(c["trades"], c["volume"]) for c in candles] == [(4, Decimal("0.004")), (4, Decimal("0.004"))]


@pytest.mark.django_db
def test_rest_ingestion_refuses_invalid_batches_with_per_trade_errors():
    services.ensure_listing("binance", "BTC-USD")
    client = bearer(unique("producer"), staff=True)
    body = rest_trades(3)
    body["trades"][1]["side"] = "long"
    body["trades"][2]["extra"] = 1
    response = client.post("/api/market/trades", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_FAILED"
    body = rest_trades(2)
    body["trades"][1]["symbol"] = "DOGE-USD"
    body["trades"][0]["price"] = "0.1234567890123456789"
    response = client.post("/api/market/trades", body, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"trades.0.price", "trades.1.symbol"}
    assert client.post("/api/market/trades", {"trades": []}, format="json").status_code == 400
    assert Trade.objects.count() == 0


# ------------------------------------------------------------ admin


@pytest.mark.django_db
def test_admin_lists_venues_instruments_trades_and_candles(staff_client):
    import_fixture()
    for name in (
        "marketdata_venue_changelist",
        "marketdata_instrument_changelist",
        "marketdata_trade_changelist",
        "marketdata_candle_changelist",
        "marketdata_tradeseries_changelist",
    ):
        response = staff_client.get(reverse(f"admin:{name}"))
        assert response.status_code == 200, name
    assert "2019-10-13T11:19:28.844Z" in staff_client.get(reverse("admin:marketdata_trade_changelist")).content.decode()
    filtered = staff_client.get(reverse("admin:marketdata_candle_changelist") + "?resolution__exact=1m")
    assert filtered.status_code == 200
    instrument = Instrument.objects.get(symbol="XRP-ETH")
    page = staff_client.get(reverse("admin:marketdata_instrument_change", args=[instrument.pk]))
    assert page.status_code == 200 and "XRPETH" in page.content.decode()
    trade = Trade.objects.first()
    assert staff_client.get(reverse("admin:marketdata_trade_change", args=[trade.pk])).status_code == 200
    assert staff_client.get(reverse("admin:marketdata_trade_add")).status_code == 403


@pytest.mark.django_db
def test_staff_add_an_instrument_with_a_venue_symbol(staff_client):
    venue = Venue.objects.create(code="kraken", name="Kraken")
    response = staff_client.post(
        reverse("admin:marketdata_instrument_add"),
        {
            "base": "sol",
            "quote": "usd",
            "venue_symbols-TOTAL_FORMS": "1",
            "venue_symbols-INITIAL_FORMS": "0",
            "venue_symbols-0-venue": str(venue.pk),
            "venue_symbols-0-native": "SOLUSD",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    instrument = Instrument.objects.get(symbol="SOL-USD")
    assert instrument.venue_symbols.get().native == "SOLUSD"


# ------------------------------------------------------------ demo data


@pytest.mark.django_db
def test_demo_data_covers_the_last_day_on_two_venues_and_seeds_once():
    now = 1_800_000_000_000
    first = seed_market_data(now_ms=now)
    assert first.fixture_trades == 12_477 and first.inserted == first.fixture_trades + first.synthetic_trades
    again = seed_market_data(now_ms=now)
    assert again.inserted == 0
    later = seed_market_data(now_ms=now + 60_000)
    assert 0 < later.inserted < 100
    for symbol in ("BTC-USD", "ETH-USD"):
        for venue in ("binance", "coinbase"):
            series = services.fetch_candles(symbol, "1h", venues=[venue], window=f"{SEED_HOURS}h", at_ms=now)
            assert len(series.candles) == SEED_HOURS, (symbol, venue)
        merged = services.fetch_candles(symbol, "1m", window="15m", at_ms=now).candles
        assert len(merged) == 15 and all(c.low <= c.open <= c.high and c.low <= c.close <= c.high for c in merged)


def test_price_precision_is_the_most_decimals_sent_or_what_staff_set():
    from marketdata.precision import decimals, price_precision

    assert [decimals(v) for v in (100.0, 100.5, 0.000312, 1e-07, 12345.678901)] == [0, 1, 6, 7, 6]
    candles = [{"open": 0.000312, "high": 0.0003125, "low": 0.0003, "close": 0.00031}]
    assert price_precision(candles) == 7
    assert price_precision([{"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0}]) == 2  # at least 2
    assert price_precision(candles, configured=4) == 4

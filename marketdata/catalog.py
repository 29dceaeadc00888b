"""Public query-engine tables of market data: ``trades`` and ``candles``.

Stable public names over the models' tables; venue and instrument appear
as their codes, times as epoch milliseconds (as on the wire).
"""

from __future__ import annotations

from marketdata.models import Candle, Instrument, Trade, Venue
from queryengine.interface import Column, Scope, Table, register_table


def register_market_tables() -> None:
    trade, venue, instrument, candle = Trade._meta, Venue._meta, Instrument._meta, Candle._meta

    def col(alias: str, meta: object, name: str) -> str:
        return f'{alias}."{meta.get_field(name).column}"'  # type: ignore[attr-defined]

    joins = (
        f'JOIN "{venue.db_table}" AS v ON v."id" = {{alias}}."{{venue}}" '
        f'JOIN "{instrument.db_table}" AS i ON i."id" = {{alias}}."{{instrument}}"'
    )
    register_table(
        Table(
            name="trades",
            description="Executed trades of every venue; ts is the exchange time in epoch ms (UTC).",
            scope=Scope.PUBLIC,
            source=f'"{trade.db_table}" AS t '
            + joins.format(
                alias="t",
                venue=trade.get_field("venue").column,
                instrument=trade.get_field("instrument").column,
            ),
            columns=(
                Column("symbol", "text", col("i", instrument, "symbol"), "BASE-QUOTE, e.g. BTC-USD."),
                Column("venue", "text", col("v", venue, "code"), "Venue code, e.g. binance."),
                Column("trade_id", "text", col("t", trade, "trade_id"), "The exchange's trade id."),
                Column("ts", "integer", col("t", trade, "ts"), "Exchange timestamp, epoch ms (UTC)."),
                Column("price", "decimal", col("t", trade, "price"), "Quote currency per unit."),
                Column("size", "decimal", col("t", trade, "size"), "Base quantity."),
                Column("side", "text", col("t", trade, "side"), "Taker side: buy or sell."),
            ),
        ),
        replace=True,
    )
    register_table(
        Table(
            name="candles",
            description=(
                "Stored per-venue candles at 1s, 5s, 1m, 15m and 4h (request_market_data merges venues and "
                "serves every resolution); empty buckets are absent."
            ),
            scope=Scope.PUBLIC,
            source=f'"{candle.db_table}" AS c '
            + joins.format(
                alias="c",
                venue=candle.get_field("venue").column,
                instrument=candle.get_field("instrument").column,
            ),
            columns=(
                Column("symbol", "text", col("i", instrument, "symbol"), "BASE-QUOTE."),
                Column("venue", "text", col("v", venue, "code"), "Venue code."),
                Column("resolution", "text", col("c", candle, "resolution"), "1s 5s 1m 15m 4h"),
                Column("ts", "integer", col("c", candle, "bucket"), "Bucket open time, epoch ms (UTC)."),
                Column("open", "decimal", col("c", candle, "open"), "First trade's price."),
                Column("high", "decimal", col("c", candle, "high"), "Highest price."),
                Column("low", "decimal", col("c", candle, "low"), "Lowest price."),
                Column("close", "decimal", col("c", candle, "close"), "Last trade's price."),
                Column("volume", "decimal", col("c", candle, "volume"), "Base quantity traded."),
                Column("trades", "integer", col("c", candle, "trades"), "Trades in the bucket."),
            ),
        ),
        replace=True,
    )

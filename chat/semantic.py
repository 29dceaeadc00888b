"""The semantic model of the catalog: what a question can ask of a table.

Per table: the nouns that name its rows (with synonyms), its measures
(aggregation over a column, with a unit), its dimensions (columns a
question filters or groups by, with the words that name them), its time
column (epoch milliseconds or a timestamp) and the columns a listing shows.
Column names and types come from the query engine's catalog
(``check_against_catalog`` fails when a declared column is not there), so a
new table needs a few lines here and no new phrases elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chat.chainwords import CHAIN_WORDS
from chat.lexicon import CATEGORIES, COUNTRIES
from queryengine.interface import catalog


@dataclass(frozen=True)
class Measure:
    name: str  # output column
    label: str  # how the answer names it ("trade count")
    sql: str  # aggregate over the table's public columns
    words: tuple[str, ...]  # phrases that ask for it
    unit: str = ""
    # A state rather than an aggregate: this column of the latest row.
    snapshot: str = ""
    # Filters the measure implies ("granted": entries of type grant).
    where: tuple[tuple[str, str], ...] = ()
    # Rows that take part (credits spent: entries that spent something).
    condition: str = ""
    per: str = ""  # the dimension that is its unit ("asset"): without a filter on it, one row per value
    also: tuple[str, ...] = ()  # measures shown beside it when grouped (a ranking by volume shows the count)


@dataclass(frozen=True)
class Dimension:
    name: str  # public column
    words: tuple[str, ...]  # phrases that group by it ("per venue", "by exchange")
    values: tuple[str, ...] = ()  # fixed values ("buy", "sell"), else read from the vocabulary
    synonyms: tuple[tuple[str, str], ...] = ()  # (phrase, value): "queries" -> "query"
    present: str = ""  # rows that have a value, when grouped by it ("error_code <> ''")
    prefix: bool = False  # the value is a prefix of the column's ("ofac" matches "ofac:ETH")
    by_key: bool = False  # groups in the order of their values (chains), not largest first
    says: str = ""  # how a restatement names a filter on it ("sent by {}"); "{name} {value}" by default
    many: bool = False  # values without end (addresses): a ranking by it shows the first few unless told


@dataclass(frozen=True)
class Entity:
    table: str
    nouns: tuple[str, ...]
    time_column: str  # "" when the rows have no time
    time_kind: str  # "ms" (epoch milliseconds), "timestamp" or ""
    measures: tuple[Measure, ...]
    dimensions: tuple[Dimension, ...]
    columns: tuple[str, ...]  # a listing shows these
    latest: tuple[str, ...]  # order of "latest" rows
    size_column: str = ""  # "largest" orders by it
    required: tuple[str, ...] = ()  # filters a question must give (or inherit)
    stored: dict[str, tuple[str, ...]] = field(default_factory=dict)  # dimension -> values that exist
    noun: str = ""  # how a listing names its rows ("credit entries"); the first noun by default
    own: bool = False  # the asker's own rows ("your queries")
    ranked_columns: tuple[str, ...] = ()  # a listing ordered by size_column shows these
    ranks: tuple[str, str] = ("largest", "smallest")  # how an answer names the two orders by size
    key: str = ""  # a column naming one row ("address"): a question that gives it looks the row up
    lookup_columns: tuple[str, ...] = ()  # what a look-up shows
    listed: str = ""  # rows a listing shows ("last_seen IS NOT NULL")
    time_label: str = ""  # what the time column is, in a restated window ("last seen")
    lookup_order: tuple[str, ...] = ()  # order of a look-up's rows
    # A boolean column every question filters on, and the words that ask
    # for its false rows ("delisted" labels: NOT active); a look-up shows both.
    flag: str = ""
    flag_off: tuple[str, ...] = ()
    # A filter matching either of two columns ("address": sender or receiver), one naming the other side.
    either: tuple[str, str, str] = ("", "", "")
    pair: str = ""
    buckets: bool = False  # "hourly", "per day" group the time column into buckets
    follows: bool = False  # a follow-up naming no table ("only USDT") is read with this table's words

    def measure(self, name: str) -> Measure | None:
        return next((m for m in self.measures if m.name == name), None)

    def dimension(self, name: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.name == name), None)


COUNT_WORDS = ("how many", "number of", "count of", "count", "no of", "# of", "total number of", "amount of")

TRADES = Entity(
    table="trades",
    nouns=("trades", "trade", "fills", "executions", "trading", "market", "deals"),
    time_column="ts",
    time_kind="ms",
    measures=(
        Measure("trades", "trade count", "count(ts)", COUNT_WORDS),
        Measure("vwap", "volume-weighted average price", "sum(price * size) / sum(size)", ("vwap", "volume weighted")),
        Measure(
            "notional", "notional (price times size)", "sum(price * size)", ("notional", "turnover", "quote volume")
        ),
        Measure("avg_price", "average price", "avg(price)", ("average price", "avg price", "mean price")),
        Measure("max_price", "highest price", "max(price)", ("highest price", "max price", "maximum price", "peak")),
        Measure("min_price", "lowest price", "min(price)", ("lowest price", "min price", "minimum price")),
        Measure("avg_size", "average trade size", "avg(size)", ("average size", "avg size", "average trade size")),
        Measure("volume", "volume", "sum(size)", ("volume", "traded", "size", "quantity", "amount traded", "how much")),
    ),
    dimensions=(
        Dimension("venue", ("venue", "venues", "exchange", "exchanges", "market place")),
        Dimension("side", ("side", "sides", "buy vs sell", "buys vs sells", "buy and sell"), ("buy", "sell")),
        Dimension("symbol", ("symbol", "symbols", "pair", "pairs", "instrument", "instruments", "markets")),
    ),
    columns=("ts", "venue", "price", "size", "side"),
    latest=("ts DESC", "trade_id DESC"),
    size_column="size",
    buckets=True,
)

CANDLES = Entity(
    table="candles",
    nouns=("candles", "candle", "ohlc", "ohlcv", "bars", "klines", "kline", "candlesticks"),
    time_column="ts",
    time_kind="ms",
    measures=(
        Measure("candles", "number of candles", "count(ts)", COUNT_WORDS),
        Measure("high", "highest high", "max(high)", ("highest high", "highest", "max high", "maximum", "max")),
        Measure("low", "lowest low", "min(low)", ("lowest low", "lowest", "min low", "minimum", "min")),
        Measure("avg_close", "average close", "avg(close)", ("average close", "average", "avg", "mean")),
        Measure("volume", "total candle volume", "sum(volume)", ("volume", "total")),
        Measure("trades", "trades in candles", "sum(trades)", ("trade count", "number of trades")),
    ),
    dimensions=(
        Dimension("venue", ("venue", "venues", "exchange", "exchanges")),
        Dimension("resolution", ("resolution",)),
        Dimension("symbol", ("symbol", "symbols", "pair", "pairs")),
    ),
    columns=("ts", "venue", "open", "high", "low", "close", "volume", "trades"),
    latest=("ts DESC", "venue"),
    size_column="volume",
    required=("symbol", "resolution"),
    stored={"resolution": ("1s", "5s", "1m", "15m", "4h")},
)

CREDITS = Entity(
    table="credit_entries",
    nouns=("credits", "credit", "balance", "ledger", "entries", "movements"),
    time_column="created_at",
    time_kind="timestamp",
    measures=(
        Measure(
            "balance", "your credit balance", "", ("balance", "left", "remaining", "have"), "credits", "balance_after"
        ),
        Measure("lifetime_spent", "your lifetime credits spent", "", ("lifetime",), "credits", "lifetime_spent_after"),
        Measure(
            "spent",
            "credits you spent",
            "coalesce(sum(spent), 0)",
            ("spent", "spend", "spending", "used", "consumed", "cost", "paid", "pay"),
            "credits",
            condition="spent > 0",
        ),
        Measure(
            "granted",
            "credits granted to you",
            "coalesce(sum(amount), 0)",
            ("granted", "earned", "received", "given"),
            "credits",
            where=(("type", "grant"),),
        ),
        Measure("entries", "number of your credit entries", "count(*)", COUNT_WORDS),
    ),
    dimensions=(
        Dimension(
            "action",
            ("action", "actions"),
            ("query", "chat", "address_analysis"),
            (
                ("queries", "query"),
                ("query", "query"),
                ("chat", "chat"),
                ("chats", "chat"),
                ("address analyses", "address_analysis"),
                ("address analysis", "address_analysis"),
                ("analyses", "address_analysis"),
            ),
        ),
        Dimension(
            "type",
            ("type", "types", "kind"),
            ("grant", "deduction"),
            (("grants", "grant"), ("deductions", "deduction"), ("deduction", "deduction")),
        ),
    ),
    columns=("sequence", "type", "amount", "balance_after", "action", "created_at"),
    latest=("sequence DESC",),
    size_column="amount",
    noun="credit entries",
    own=True,
)

QUERIES = Entity(
    table="query_history",
    nouns=("queries", "query", "sql", "query history"),
    time_column="created_at",
    time_kind="timestamp",
    measures=(
        Measure("queries", "number of your queries (this one included)", "count(*)", COUNT_WORDS),
        Measure(
            "avg_duration_ms",
            "average duration of your queries",
            "avg(duration_ms)",
            ("average duration", "avg duration", "mean duration", "average query duration", "average time"),
            "ms",
        ),
        Measure(
            "max_duration_ms",
            "longest duration of your queries",
            "max(duration_ms)",
            ("max duration", "maximum duration", "longest duration", "max query duration"),
            "ms",
        ),
        Measure(
            "min_duration_ms",
            "shortest duration of your queries",
            "min(duration_ms)",
            ("min duration", "minimum duration", "shortest duration", "min query duration"),
            "ms",
        ),
        Measure(
            "rows_returned",
            "rows returned by your queries",
            "coalesce(sum(rows_returned), 0)",
            ("rows", "how many rows", "rows returned", "number of rows"),
        ),
    ),
    dimensions=(
        Dimension(
            "status",
            ("status", "statuses", "state", "outcome"),
            ("completed", "failed", "timeout", "cancelled", "running"),
            (
                ("failed", "failed"),
                ("fail", "failed"),
                ("failing", "failed"),
                ("unsuccessful", "failed"),
                ("broken", "failed"),
                ("completed", "completed"),
                ("successful", "completed"),
                ("succeeded", "completed"),
                ("finished", "completed"),
                ("timed out", "timeout"),
                ("timeout", "timeout"),
                ("timeouts", "timeout"),
                ("cancelled", "cancelled"),
                ("canceled", "cancelled"),
                ("running", "running"),
                ("in progress", "running"),
            ),
        ),
        Dimension("error_code", ("error", "errors", "error code", "error codes"), present="error_code <> ''"),
    ),
    columns=("query_id", "status", "duration_ms", "rows_returned", "created_at"),
    latest=("created_at DESC", "query_id"),
    size_column="duration_ms",
    noun="queries",
    own=True,
    ranked_columns=("query_id", "sql", "duration_ms", "status"),
    ranks=("slowest", "fastest"),
)

CATEGORY = Dimension(
    "category",
    ("category", "categories", "kind", "type"),
    tuple(CATEGORIES),
    tuple((phrase, value) for value, phrases in CATEGORIES.items() for phrase in phrases),
)
COUNTRY = Dimension("country", ("country", "countries", "jurisdiction"), (), tuple(COUNTRIES.items()))

ENTITIES = Entity(
    table="entities",
    nouns=("entities", "entity", "companies", "organisations", "organizations", "operators"),
    time_column="",
    time_kind="",
    measures=(Measure("entities", "number of entities", "count(name)", COUNT_WORDS),),
    dimensions=(CATEGORY, COUNTRY, Dimension("name", ("name", "names"))),
    columns=("name", "category", "country"),
    latest=("name",),
    noun="entities",
)

CHAIN = Dimension("chain", ("chain", "chains", "network", "networks"), (), tuple(CHAIN_WORDS.items()))

ADDRESSES = Entity(
    table="addresses",
    nouns=("addresses", "address", "wallets", "wallet"),
    time_column="last_seen",
    time_kind="ms",
    measures=(Measure("addresses", "number of addresses", "count(address)", COUNT_WORDS),),
    dimensions=(
        Dimension(CHAIN.name, CHAIN.words, CHAIN.values, CHAIN.synonyms, by_key=True),
        Dimension("cluster_id", ("cluster", "clusters"), present="cluster_id IS NOT NULL"),
    ),
    columns=("address", "chain", "first_seen", "last_seen"),
    latest=("last_seen DESC", "address"),
    noun="addresses",
    key="address",
    lookup_columns=("address", "chain", "first_seen", "last_seen", "cluster_id", "cluster_size"),
    listed="last_seen IS NOT NULL",
    time_label="last seen",
)

LABELS = Entity(
    table="labels",
    nouns=("labels", "label", "labelled", "labeled", "tagged", "tags", "attributed", "attribution"),
    time_column="",
    time_kind="",
    measures=(Measure("addresses", "number of labelled addresses", "count(DISTINCT address)", COUNT_WORDS),),
    dimensions=(
        CATEGORY,
        COUNTRY,
        CHAIN,
        Dimension("entity", ("entity", "entities", "owner", "owners")),
        Dimension("source", ("source", "sources", "list", "lists"), (), (("ofac", "ofac"),), prefix=True),
    ),
    columns=("address", "chain", "entity", "category"),
    latest=("chain", "address", "entity"),
    noun="labelled addresses",
    key="address",
    lookup_columns=("entity", "category", "country", "source", "active"),
    lookup_order=("active DESC", "entity", "source"),
    flag="active",
    flag_off=("delisted", "removed", "no longer listed", "unlisted"),
)


TRANSFER_COUNT = tuple(word for word in COUNT_WORDS if word != "amount of")  # a transfer's amount is its amount
PARTY = (("sender", "from_address"), ("receiver", "to_address"))
RECEIVERS = ("receiver", "receivers", "recipient", "recipients")


def _each(noun: str) -> tuple[str, ...]:
    return tuple(f"{lead} {noun}" for lead in ("how many", "number of", "count of", "unique", "distinct"))


def _amount(name: str, label: str, sql: str, words: tuple[str, ...]) -> Measure:
    """An amount of transfers: in the unit of their asset, shown with their count when grouped."""
    return Measure(name, label, sql, words, per="asset", also=("transfers",))


TRANSFERS = Entity(
    table="transfers",
    nouns=("transfers", "transfer", "transactions", "transaction", "tx", "txs", "payments", "flows"),
    time_column="ts",
    time_kind="ms",
    measures=(
        Measure("transfers", "number of transfers", "count(ts)", (*TRANSFER_COUNT, "most transfers", "most active")),
        *(Measure(f"{n}s", f"number of distinct {n}s", f"count(DISTINCT {c})", _each(f"{n}s")) for n, c in PARTY),
        _amount("volume", "volume", "sum(amount)", ("volume", "how much", "total", "sum", "amount", "transferred")),
        _amount("avg_amount", "average amount", "avg(amount)", ("average", "avg", "mean", "typical")),
        _amount("max_amount", "largest amount", "max(amount)", ("max amount", "maximum amount", "highest amount")),
        _amount("min_amount", "smallest amount", "min(amount)", ("min amount", "minimum amount", "lowest amount")),
    ),
    dimensions=(
        Dimension(CHAIN.name, CHAIN.words, by_key=True),
        Dimension("asset", ("asset", "assets", "token", "tokens", "coin", "coins"), by_key=True),
        Dimension(
            "from_address", ("sender", "senders"), present="from_address IS NOT NULL", says="sent by {}", many=True
        ),
        Dimension("to_address", RECEIVERS, present="to_address IS NOT NULL", says="received by {}", many=True),
    ),
    columns=("ts", "tx_hash", "from_address", "to_address", "asset", "amount"),
    latest=("ts DESC", "tx_hash"),
    size_column="amount",
    noun="transfers",
    either=("address", "from_address", "to_address"),
    pair="counterparty",
    buckets=True,
    follows=True,
)

MODEL: dict[str, Entity] = {
    entity.table: entity for entity in (TRADES, CANDLES, CREDITS, QUERIES, ENTITIES, ADDRESSES, LABELS, TRANSFERS)
}


def check_against_catalog() -> list[str]:
    """Columns the model names that the catalog does not have (none when in step)."""
    problems = []
    for entity in MODEL.values():
        table = catalog.get(entity.table)
        if table is None:
            problems.append(f"{entity.table}: not in the catalog")
            continue
        names = {column.name for column in table.table.columns}
        declared = {*entity.columns, *entity.ranked_columns, *entity.lookup_columns}
        declared |= {d.name for d in entity.dimensions}
        declared |= {entity.time_column} if entity.time_column else set()
        declared |= {order.split()[0] for order in entity.latest}
        problems += [f"{entity.table}.{name}: not in the catalog" for name in sorted(declared - names)]
    return problems

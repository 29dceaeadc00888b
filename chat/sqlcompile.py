"""An intent compiled to one SELECT through sqlglot, with a restatement.

The statement is built as a sqlglot expression over the catalog's public
names: filters and window bounds are ``:name`` placeholders (values are
never written into the text), measures and buckets come from the semantic
model. It then goes through the query engine like any user statement (the
same validator, tenant guard and limits). The restatement says what was
computed before any number: "Trade count of XRP-ETH on binance, 5-minute
buckets, the last hour (2019-10-11 13:00 to 14:00 UTC)".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlglot import exp, parse_one

from chat import bounds, semantic
from chat.intent import Intent, bucket_ms
from chat.timewords import Window

DEFAULT_ROWS = {"trades": 10, "candles": 100, "credit_entries": 10, "query_history": 10, "entities": 50}
DEFAULT_ROWS |= {"addresses": 10, "labels": 50, "transfers": 10}
UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


@dataclass
class Compiled:
    sql: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    shape: str = "rows"
    unit: str = ""


def _utc_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def bucket_words(bucket: str) -> str:
    count, unit = int(bucket[:-1]), UNIT_WORDS[bucket[-1]]
    return f"{unit}ly buckets".replace("dayly", "daily") if count == 1 else f"{count}-{unit} buckets"


def _where(entity: semantic.Entity, intent: Intent, params: dict[str, Any]) -> list[exp.Expression]:
    conditions: list[exp.Expression] = []
    for name, value in sorted(intent.filters.items()):
        if name == intent.group:
            continue
        dimension = entity.dimension(name)
        if name == entity.pair and entity.either[0] in intent.filters:
            continue  # with the address it pairs with
        if name == entity.either[0]:
            # Either column matches (an address as sender or receiver), or
            # the two columns match the pair in either order.
            first, second = entity.either[1:]
            sides: list[Any] = [exp.column(c).eq(exp.Placeholder(this=name)) for c in (first, second)]
            if entity.pair and entity.pair in intent.filters:
                other = exp.Placeholder(this=entity.pair)
                sides = [
                    exp.and_(sides[0], exp.column(second).eq(other)),
                    exp.and_(exp.column(first).eq(other), sides[1]),
                ]
                params[entity.pair] = intent.filters[entity.pair]
            conditions.append(exp.paren(exp.or_(*sides)))
            params[name] = value
            continue
        if dimension is not None and dimension.prefix:
            conditions.append(exp.column(name).like(exp.Placeholder(this=name)))
            params[name] = f"{value}%"
            continue
        conditions.append(exp.column(name).eq(exp.Placeholder(this=name)))
        params[name] = value
    if entity.size_column:
        conditions += bounds.conditions(entity.size_column, intent.bounds, params)
    if entity.flag and not (entity.key and entity.key in intent.filters):
        flag = exp.column(entity.flag)
        conditions.append(exp.not_(flag) if intent.flag_off else flag)
    if intent.window is not None and entity.time_column:
        start, end = intent.window["start_ms"], intent.window["end_ms"]
        convert = _utc_text if entity.time_kind == "timestamp" else int
        conditions.append(exp.column(entity.time_column) >= exp.Placeholder(this="since"))
        params["since"] = convert(start)
        if end is not None:
            conditions.append(exp.column(entity.time_column) < exp.Placeholder(this="until"))
            params["until"] = convert(end)
    reads_venue = "venue" in params or intent.group == "venue"
    if entity.table in ("trades", "candles") and not reads_venue:
        # Market tables join their venue: a statement that reads nothing of
        # it is refused by the SQLite authorizer of the query engine.
        conditions.append(exp.column("venue").is_(exp.null()).not_())
    return conditions


def describe(entity: semantic.Entity, intent: Intent, what: str) -> str:
    if entity.table not in ("trades", "candles"):
        return _describe_own(entity, intent, what)
    parts = [what]
    symbol = intent.filters.get("symbol")
    subject = symbol or "all symbols"
    if entity.table == "candles" and intent.bucket:
        subject += f" {intent.bucket} candles"
    parts[0] += f" of {subject}"
    if "venue" in intent.filters and intent.group != "venue":
        parts[0] += f" on {intent.filters['venue']}"
    if "side" in intent.filters and intent.group != "side":
        parts[0] += f", {intent.filters['side']} side"
    parts[0] += bounds.restated(entity.size_column, intent.bounds)
    if intent.group:
        parts.append(f"per {intent.group}")
    if entity.table == "trades" and intent.bucket:
        parts.append(bucket_words(intent.bucket))
    if intent.window is not None:
        window = Window(intent.window["start_ms"], intent.window["end_ms"], intent.window["words"], (0, 0))
        parts.append(f"{window.words} ({window.restated()})")
    else:
        parts.append("all time")
    return ", ".join(parts)


def _describe_own(entity: semantic.Entity, intent: Intent, what: str) -> str:
    words = {"query": "queries", "chat": "chat", "address_analysis": "address analyses"}
    text = what
    implied = dict(measure.where) if (measure := entity.measure(intent.measure or "")) else {}
    for name, value in sorted(intent.filters.items()):
        dimension = entity.dimension(name)
        if name == intent.group or implied.get(name) == value:
            continue
        if name == "action":
            text += f" on {words.get(value, value)}"
        elif dimension is not None and dimension.says:
            text += ", " + dimension.says.format(value)
        elif name == entity.either[0] and entity.pair in intent.filters:
            text += f", between {value} and {intent.filters[entity.pair]}"
        elif name == entity.either[0]:
            text += f", sent or received by {value}"
        elif name == entity.pair:
            continue
        else:
            text += f", {name} {value}"
    text += bounds.restated(entity.size_column, intent.bounds)
    if entity.flag_off and intent.flag_off and "elisted" not in text:
        text += ", delisted"
    if intent.group:
        grouped = entity.dimension(intent.group)
        text += f", per {grouped.words[0] if grouped and grouped.says else intent.group}"
    if entity.buckets and intent.bucket:
        text += f", {bucket_words(intent.bucket)}"
    if not entity.time_column:
        pass
    elif intent.window is not None:
        window = Window(intent.window["start_ms"], intent.window["end_ms"], intent.window["words"], (0, 0))
        label = f"{entity.time_label} " if entity.time_label else ""
        label += "in " if label and window.words.startswith("the ") else ""
        text += f", {label}{window.words} ({window.restated()})"
    elif not (entity.measure(intent.measure or "") or semantic.Measure("", "", "", ())).snapshot:
        text += ", all time"
    return text[:1].upper() + text[1:]


def compile_intent(entity: semantic.Entity, intent: Intent) -> Compiled:
    params: dict[str, Any] = {}
    measure = entity.measure(intent.measure) if intent.measure else None
    for name, value in measure.where if measure else ():
        intent.filters.setdefault(name, value)
    where: list[Any] = _where(entity, intent, params)
    if measure is not None and measure.condition:
        where.append(exp.condition(measure.condition))
    select = exp.select().from_(entity.table)
    if where:
        select = select.where(exp.and_(*where))
    if measure is not None and measure.snapshot:
        select = select.select(exp.column(measure.snapshot).as_(measure.name)).order_by(*entity.latest).limit(1)
        return Compiled(select.sql(), describe(entity, intent, measure.label), params, "value", measure.unit)
    time_bucket = entity.buckets and intent.bucket is not None
    if measure is None and (time_bucket or intent.group):
        measure = next(m for m in entity.measures if m.sql.lower().startswith("count("))
    if measure is None:
        return _listing(entity, intent, select, params)
    if measure.per and measure.per not in intent.filters and not (intent.group or time_bucket):
        intent.group = measure.per  # amounts in different units do not add up: one row per unit
    keys: list[tuple[Any, str]] = []
    dimension = None
    by_key = False
    if time_bucket and intent.bucket:
        size = bucket_ms(intent.bucket)
        bucket = parse_one(f"({entity.time_column} / {size}) * {size}")
        keys.append((bucket, "bucket"))
    if intent.group:
        keys.append((exp.column(intent.group), intent.group))
        dimension = entity.dimension(intent.group)
        if dimension is not None and dimension.present:
            select = select.where(exp.condition(dimension.present))
        by_key = dimension is not None and dimension.by_key  # groups in the order of their values
    for expression, name in keys:
        select = select.select(expression.as_(name))
    select = select.select(parse_one(measure.sql).as_(measure.name))
    shown = [measure.name]
    for name in measure.also if keys else ():
        also = entity.measure(name)
        if also is not None:
            select = select.select(parse_one(also.sql).as_(also.name))
            shown.append(also.name)
    if keys:
        # Buckets in time order; a dimension's groups largest first.
        ranking = [] if time_bucket or by_key else [exp.Ordered(this=exp.column(n), desc=True) for n in shown]
        select = select.group_by(*(e for e, _ in keys)).order_by(*ranking, *(exp.column(n) for _, n in keys))
        many = dimension is not None and dimension.many and not intent.limit
        if ranking and (intent.limit or many):
            # "top 5 senders": the first groups of the ranking; of addresses, the first few unless told.
            select = select.limit(intent.limit or DEFAULT_ROWS[entity.table])
    label = measure.label[:1].upper() + measure.label[1:]
    shape = "rows" if keys else "value"
    unit = intent.filters.get(measure.per, "") if measure.per else measure.unit
    return Compiled(select.sql(), describe(entity, intent, label), params, shape, unit if not keys else "")


def _listing(entity: semantic.Entity, intent: Intent, select: exp.Select, params: dict[str, Any]) -> Compiled:
    order = intent.order
    if entity.key and entity.key in intent.filters:
        select = select.select(*(exp.column(c) for c in entity.lookup_columns))
        address, chain = intent.filters[entity.key], intent.filters.get("chain") or "its chain"
        if entity.lookup_order:
            select = select.order_by(*entity.lookup_order)
            return Compiled(select.sql(), f"Labels of {address} on {chain}, active and delisted", params, "labels")
        what = f"Activity of {address} on {chain}"
        return Compiled(select.sql(), what + " (first and last seen, cluster)", params, "rows")
    if entity.listed:
        select = select.where(exp.condition(entity.listed))
    if entity.ranked_columns and order in ("largest", "smallest"):
        select = select.select(*(exp.column(c) for c in entity.ranked_columns))
        select = select.where(exp.column(entity.size_column).is_(exp.null()).not_())
    else:
        select = select.select(*(exp.column(c) for c in entity.columns))
    if order is None:
        order = "oldest" if entity.table == "candles" and intent.window is not None else "latest"
    time = entity.time_column
    orders = {
        "latest": list(entity.latest),
        "oldest": [f"{time} ASC", *entity.latest[1:]] if time else list(entity.latest),
        "largest": [f"{entity.size_column} DESC", f"{time} DESC"],
        "smallest": [f"{entity.size_column} ASC", f"{time} DESC"],
    }[order]
    limit = intent.limit or DEFAULT_ROWS[entity.table]
    select = select.order_by(*orders).limit(limit)
    noun = entity.noun or entity.nouns[0]
    largest, smallest = entity.ranks
    latest = "most recently active" if entity.table == "addresses" else "latest"
    what = {"latest": latest, "oldest": "first", "largest": largest, "smallest": smallest}[order]
    one = {"addresses": "address", "queries": "query", "entities": "entity", "credit entries": "credit entry"}
    one_noun = one.get(noun, noun[:-1])
    what = f"The {limit} {what} {noun}" if limit > 1 else f"The {what} {one_noun}"
    if entity.table == "candles":
        what = f"The {what.split()[2]} {limit}" if limit > 1 else what
    if entity.own:
        what = f"Your {limit} {what.split()[2]} {noun}" if limit > 1 else f"Your {what.split()[1]} {one_noun}"
    if not entity.time_column:
        what = f"{noun[:1].upper()}{noun[1:]} (at most {limit}, by {entity.latest[0]})"
        if entity.flag_off and intent.flag_off:
            what = f"Delisted {noun.split()[-1]} (at most {limit}, by {entity.latest[0]})"
    if intent.window is None and entity.table == "trades" and limit == 1 and order == "latest":
        what = "The latest trade (its price is the last traded price)"
    return Compiled(select.sql(), describe(entity, intent, what), params, "rows")

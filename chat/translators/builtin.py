"""The built-in translator: offline and deterministic.

Intent recognition plus slot filling over the query engine's catalog, for
the tables the semantic translator (``chat.translators.semantic``) does
not model yet: transfers (risk questions, addresses and labels are the
semantic translator's).

1. addresses (validated per chain by ``compliance.addresses``) and market
   symbols are lifted out of the question first, as written;
2. the rest is lower-cased, number words become digits, and words that are
   a small misspelling of a known keyword are corrected (difflib ratio);
3. slots are read from it: time range, top-N, aggregate, grouping, symbol,
   venue, resolution, chain, asset, category, country, entity, direction
   and credit entry types;
4. the table is chosen by keyword evidence; a follow-up that names no table
   ("and on bitcoin?") keeps the previous turn's table and intent, with the
   slots it does name replacing the old ones; the client's ``context``
   fills symbol, chain and address when the question leaves them out;
5. one builder per table writes a SELECT over public names with every
   value bound as a ``:name`` parameter (never interpolated). Only
   integers parsed from the question (an interval's length) and fixed
   keywords are written into the text.

When the table or a slot the statement needs is unknown, the answer is a
clarifying question and no SQL runs.

Size: this module is over the house limit (about 500 lines, functions under
about 80) because its keyword tables, slot readers and per-table builders
are one phrase matcher that is replaced as a whole by a compositional
translator (a semantic model of the catalog, intents compiled through
sqlglot); splitting it first would only move the same phrases around.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chat.chainwords import ADDRESS_FORMS, CHAIN_WORDS, RISK_WORDS
from chat.lexicon import CATEGORIES, COUNTRIES, COUNTRY_CODES
from chat.refusals import refusal
from chat.timewords import UNIT_ALIASES, UNITS_MS
from chat.translators.base import ChatContext, ProgressCallback, Translation, Turn
from chat.vocabulary import Vocabulary, load_vocabulary
from compliance.interface import BITCOIN, ETHEREUM, InvalidAddress, normalize_chain_address

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
DEFAULT_ROWS = 10
MAX_ROWS = 100
STORED_RESOLUTIONS = ("1s", "5s", "1m", "15m", "4h")

# --------------------------------------------------------------------- lexicon

NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "fifty": 50,
    "hundred": 100,
    "a": 1,
    "an": 1,
}

BASE_WORDS = {
    "bitcoin": "BTC",
    "btc": "BTC",
    "ethereum": "ETH",
    "ether": "ETH",
    "eth": "ETH",
    "xrp": "XRP",
    "ripple": "XRP",
    "solana": "SOL",
    "sol": "SOL",
}
ASSET_WORDS = {
    "usdt": "USDT",
    "tether": "USDT",
    "usdc": "USDC",
    "dai": "DAI",
    "weth": "WETH",
}
NATIVE_ASSET = {ETHEREUM: "ETH", BITCOIN: "BTC"}
QUOTE_PREFERENCE = ("USD", "USDT", "USDC", "EUR")

RESOLUTION_WORDS = {
    "second": "1s",
    "minute": "1m",
    "hourly": "1h",
    "hour": "1h",
    "daily": "1d",
    "day": "1d",
}
RESOLUTION_UNITS = {"s": "s", "sec": "s", "second": "s", "m": "m", "min": "m", "minute": "m", "h": "h", "hour": "h"}
RESOLUTION_UNITS |= {"d": "d", "day": "d"}
VALID_RESOLUTIONS = ("1s", "5s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d")

ENTRY_TYPES: dict[str, tuple[str, ...]] = {
    "grant": ("grant", "grants", "granted", "given", "topped", "top up", "top ups"),
    "deduction": ("deduction", "deductions", "deducted", "charged", "charges"),
    "refund": ("refund", "refunds", "refunded"),
    "hold": ("hold", "holds"),
    "capture": ("capture", "captures", "captured"),
    "release": ("release", "releases", "released"),
    "expiry": ("expiry", "expired", "expiries"),
    "adjustment": ("adjustment", "adjustments", "adjusted"),
}
CREDIT_ACTIONS: dict[str, tuple[str, ...]] = {
    "address_analysis": ("address analysis", "address analyses", "analyses", "analysis", "risk checks"),
    "query": ("queries", "query", "querying", "sql"),
    "chat": ("chat", "chats", "questions", "asking"),
}
AGGREGATES: dict[str, tuple[str, ...]] = {
    "count": ("how many", "number of", "count", "how often"),
    "avg": ("average", "mean", "avg", "typical"),
    "max": ("highest", "maximum", "max", "peak", "most expensive", "top price"),
    "min": ("lowest", "minimum", "min", "cheapest", "bottom"),
    "sum": ("total", "sum", "how much", "overall"),
}
GROUPS: dict[str, tuple[str, ...]] = {
    "venue": ("per venue", "by venue", "each venue", "every venue", "per exchange", "by exchange", "each exchange"),
    "side": (
        "by side",
        "per side",
        "buy vs sell",
        "buys and sells",
        "buy and sell",
        "buys vs sells",
        "buy versus sell",
    ),
    "symbol": ("per symbol", "by symbol", "each symbol", "per market", "by market", "per pair", "by pair"),
    "chain": ("per chain", "by chain", "each chain", "every chain"),
    "category": ("per category", "by category", "each category", "every category", "per kind"),
    "country": ("per country", "by country", "each country", "every country"),
    "action": ("per action", "by action", "each action", "on what", "what did i spend", "where did my credits go"),
    "type": ("by type", "per type", "each type", "by entry type"),
    "asset": ("per asset", "by asset", "per token", "by token", "each asset", "each token"),
    "day": ("per day", "by day", "each day", "daily"),
    "source": ("per source", "by source", "each source"),
}

# Evidence for each table: (phrase, weight).
TABLE_WORDS: dict[str, tuple[tuple[str, int], ...]] = {
    "credit_entries": (
        ("credit", 3),
        ("credits", 3),
        ("balance", 3),
        ("ledger", 3),
        ("lifetime", 2),
        ("refunds", 2),
        ("refund", 2),
        ("deductions", 2),
        ("charged", 2),
        ("i spend", 2),
        ("did i spend", 2),
        ("did i pay", 3),
        ("i paid", 3),
        ("spent", 1),
    ),
    "trades": (
        ("trade", 3),
        ("trades", 3),
        ("traded", 3),
        ("trading", 2),
        ("price", 3),
        ("prices", 3),
        ("vwap", 3),
        ("fills", 2),
        ("buys", 1),
        ("sells", 1),
    ),
    "candles": (
        ("candle", 4),
        ("candles", 4),
        ("candlesticks", 4),
        ("ohlc", 4),
        ("ohlcv", 4),
        ("kline", 4),
        ("klines", 4),
        ("bars", 3),
        ("chart", 2),
    ),
    "transfers": (
        ("transfer", 3),
        ("transfers", 3),
        ("transferred", 3),
        ("transaction", 3),
        ("transactions", 3),
        ("tx", 3),
        ("txs", 3),
        ("sent", 2),
        ("send", 2),
        ("received", 2),
        ("receive", 2),
        ("outgoing", 3),
        ("incoming", 3),
        ("outflow", 3),
        ("outflows", 3),
        ("inflow", 3),
        ("inflows", 3),
        ("moved", 2),
        ("counterparties", 3),
        ("counterparty", 3),
        ("deposits", 2),
        ("withdrawals", 2),
    ),
    "labels": (
        ("label", 3),
        ("labels", 3),
        ("labelled", 3),
        ("labeled", 3),
        ("tagged", 3),
        ("tags", 2),
        ("attributed", 3),
        ("attribution", 3),
        ("ofac", 3),
        ("delisted", 3),
        ("listed", 2),
        ("who owns", 3),
        ("owner", 2),
        ("belong", 2),
        ("belongs", 2),
        ("sanctioned", 1),
    ),
}
FOLLOW_UP = ("and ", "what about", "how about", "same for", "same on", "now for", "also for", "and for", "and on")

_STOP_FUZZY = frozenset(
    {"other", "there", "their", "these", "those", "where", "which", "while", "about", "above", "after", "again"}
    | {"what", "when", "show", "give", "list", "many", "much", "with", "from", "that", "this", "have", "were"}
    | {"does", "done", "into", "over", "last", "past", "each", "every", "most", "more", "less", "than", "then"}
    | {"make", "made", "name", "names", "send", "sends", "biggest", "largest", "latest", "newest"}
)


def _keywords() -> frozenset[str]:
    words: set[str] = set()
    groups: list[Any] = [
        CATEGORIES.values(),
        ENTRY_TYPES.values(),
        CREDIT_ACTIONS.values(),
        AGGREGATES.values(),
        GROUPS.values(),
    ]
    for group in groups:
        for phrases in group:
            for phrase in phrases:
                words.update(phrase.split())
    for pairs in TABLE_WORDS.values():
        for phrase, _ in pairs:
            words.update(phrase.split())
    for name in COUNTRIES:
        words.update(name.split())
    words.update(CHAIN_WORDS)
    words.update(BASE_WORDS)
    words.update(ASSET_WORDS)
    words.update(RISK_WORDS)
    words.update(
        {"volume", "addresses", "address", "largest", "biggest", "smallest", "latest", "recent", "newest", "oldest"}
        | {"yesterday", "today", "minutes", "hours", "days", "weeks", "months", "minute", "hour", "week", "month"}
        | {"venue", "venues", "symbol", "symbols", "markets", "duration", "durations", "rows", "active", "most"}
        | {"buy", "sell", "side", "open", "close", "high", "low", "movements", "entries", "history", "country"}
        | {"category", "categories", "source", "sources", "spending", "granted", "earned", "left", "remaining"}
    )
    return frozenset(word for word in words if word.isalpha() and len(word) >= 4)


KEYWORDS = _keywords()
_KEYWORD_LIST = sorted(KEYWORDS)

_PAIR_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9]{1,9})\s?[-/]\s?([A-Za-z][A-Za-z0-9]{1,9})\b")
_TOKEN_RE = re.compile(r"[a-z0-9_]+")
_SQL_INTERVAL_UNIT = {
    "second": "seconds",
    "minute": "minutes",
    "hour": "hours",
    "day": "days",
    "week": "days",
    "month": "days",
    "year": "days",
}
_UNIT_GROUP = "|".join(sorted(UNIT_ALIASES, key=len, reverse=True))
_ROLLING_RE = re.compile(
    rf"\b(?:in |during |over |for |within )?(?:the )?(?:last|past|previous|recent) (\d+) ?({_UNIT_GROUP})\b"
)
_ROLLING_ONE_RE = re.compile(
    r"\b(?:in |during |over |for |within )?(?:the )?(?:last|past|previous) (second|minute|hour|day|week|month|year)\b"
)
_CALENDAR_RE = re.compile(
    r"\b(?:for |from |during |in |on )?(today|yesterday|this week|this month|this year|so far this month)\b"
)
_TOP_RE = [
    re.compile(r"\btop (\d+)\b"),
    re.compile(r"\b(?:first|last|latest|recent|newest|oldest|largest|biggest|smallest|show|list|give me) (\d+)\b"),
    re.compile(r"\b(\d+) (?:largest|biggest|latest|last|recent|newest|most|highest|lowest|smallest|slowest|top)\b"),
    re.compile(r"\b(\d+) (?:trades|transfers|transactions|candles|queries|entries|movements|addresses|entities)\b"),
]


# ----------------------------------------------------------------------- slots


@dataclass
class TimeRange:
    label: str
    start_ms: int
    end_ms: int | None
    # For timestamp columns: SQL over now() (no parameter, so that the
    # database's clock and type rules apply on both stacks).
    sql_start: str
    sql_end: str | None = None


@dataclass
class Slots:
    table: str | None = None
    intent: str | None = None
    symbol: str | None = None
    base: str | None = None
    venue: str | None = None
    resolution: str | None = None
    chain: str | None = None
    address: str | None = None
    asset: str | None = None
    category: str | None = None
    country: str | None = None
    entity: str | None = None
    direction: str | None = None
    side: str | None = None
    entry_type: str | None = None
    action: str | None = None
    aggregate: str | None = None
    group: str | None = None
    limit: int | None = None
    order: str | None = None
    time: dict[str, Any] | None = None
    source: str | None = None
    delisted: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    def time_range(self) -> TimeRange | None:
        return TimeRange(**self.time) if self.time else None


@dataclass
class Parsed:
    slots: Slots
    text: str  # corrected, lower-cased, values lifted out
    scores: dict[str, int]
    risk: bool
    follow_up: bool
    invalid_address: str | None = None
    problems: list[str] = field(default_factory=list)


def _utc_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _window_words(label: str) -> str:
    calendar = label in ("today", "yesterday") or label.startswith("this ")
    return f" {label}" if calendar else f" in {label}"


ACTION_NOUNS = {"query": "queries", "chat": "chat", "address_analysis": "address analyses"}


def _has(text: str, *phrases: str) -> bool:
    padded = f" {text} "
    return any(f" {phrase} " in padded for phrase in phrases)


def _first_key(text: str, table: dict[str, tuple[str, ...]]) -> str | None:
    """The key whose phrase occurs earliest in ``text`` (longest phrase first on ties)."""
    best: tuple[int, int, str] | None = None
    padded = f" {text} "
    for key, phrases in table.items():
        for phrase in phrases:
            index = padded.find(f" {phrase} ")
            if index >= 0:
                candidate = (index, -len(phrase), key)
                if best is None or candidate < best:
                    best = candidate
    return best[2] if best else None


def _correct(word: str, extra: tuple[str, ...] = ()) -> str:
    if word in KEYWORDS or word in extra or not word.isalpha() or len(word) < 4 or word in _STOP_FUZZY:
        return word
    cutoff = 0.86 if len(word) <= 5 else 0.8
    vocabulary = _KEYWORD_LIST + list(extra)
    match = difflib.get_close_matches(word, vocabulary, n=1, cutoff=cutoff)
    return match[0] if match else word


def _time_range(text: str, now_ms: int) -> tuple[TimeRange | None, str]:
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)

    def ms(moment: datetime) -> int:
        return int(moment.timestamp() * 1000)

    match = _ROLLING_RE.search(text) or _ROLLING_ONE_RE.search(text)
    if match:
        if match.re is _ROLLING_RE:
            count, unit = int(match.group(1)), UNIT_ALIASES[match.group(2)]
        else:
            count, unit = 1, match.group(1)
        count = max(1, min(count, 100_000))
        span = count * UNITS_MS[unit]
        sql_count = count * {"week": 7, "month": 30, "year": 365}.get(unit, 1)
        label = f"the last {count} {unit}s" if count > 1 else f"the last {unit}"
        range_ = TimeRange(label, now_ms - span, None, f"now() - INTERVAL '{sql_count} {_SQL_INTERVAL_UNIT[unit]}'")
        return range_, text[: match.start()] + " " + text[match.end() :]
    match = _CALENDAR_RE.search(text)
    if match:
        word = match.group(1).replace("so far this month", "this month")
        if word == "today":
            range_ = TimeRange("today", ms(day_start), None, "date_trunc('day', now())")
        elif word == "yesterday":
            range_ = TimeRange(
                "yesterday",
                ms(day_start - timedelta(days=1)),
                ms(day_start),
                "date_trunc('day', now()) - INTERVAL '1 day'",
                "date_trunc('day', now())",
            )
        elif word == "this week":
            monday = day_start - timedelta(days=day_start.weekday())
            range_ = TimeRange("this week", ms(monday), None, "date_trunc('week', now())")
        elif word == "this month":
            range_ = TimeRange("this month", ms(day_start.replace(day=1)), None, "date_trunc('month', now())")
        else:
            range_ = TimeRange("this year", ms(day_start.replace(month=1, day=1)), None, "date_trunc('year', now())")
        return range_, text[: match.start()] + " " + text[match.end() :]
    return None, text


def _limit(text: str) -> int | None:
    for pattern in _TOP_RE:
        match = pattern.search(text)
        if match:
            return max(1, min(int(match.group(1)), MAX_ROWS))
    return None


def _resolution(text: str) -> str | None:
    match = re.search(
        r"\b(\d+) ?(s|sec|second|m|min|minute|h|hour|d|day)s?\b(?= ?(?:candle|bar|kline|ohlc|chart|res))", text
    )
    if match is None:
        match = re.search(r"\b(\d+)(s|m|h|d)\b", text)
    if match:
        return f"{int(match.group(1))}{RESOLUTION_UNITS[match.group(2)]}"
    for word, resolution in RESOLUTION_WORDS.items():
        if _has(text, f"{word} candles", f"{word} candle", f"{word} bars", f"{word} klines", word + "ly") or (
            word in ("hourly", "daily") and _has(text, word)
        ):
            return resolution
    if _has(text, "minutely", "per minute", "by minute"):
        return "1m"
    return None


class BuiltinTranslator:
    name = "builtin"

    def __init__(self, vocabulary: Vocabulary | None = None) -> None:
        self._vocabulary = vocabulary

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            self._vocabulary = load_vocabulary()
        return self._vocabulary

    # ------------------------------------------------------------ parsing

    def parse(self, question: str, now_ms: int) -> Parsed:
        vocab = self.vocabulary
        original = " ".join(question.strip().split())
        slots = Slots()
        invalid: str | None = None
        problems: list[str] = []

        for regex, chain in ADDRESS_FORMS:
            for match in regex.finditer(original):
                text = match.group(0)
                try:
                    normal = normalize_chain_address(chain, text)
                except InvalidAddress as exc:
                    if slots.address is None:
                        invalid = f"{text} is not a valid {chain} address: {exc}"
                    continue
                if slots.address is None:
                    slots.address, slots.chain = normal, chain
            original = regex.sub(" ADDRESS ", original)

        symbols = {symbol.replace("-", "").upper(): symbol for symbol in vocab.symbols}
        for match in _PAIR_RE.finditer(original):
            key = (match.group(1) + match.group(2)).upper()
            if key in symbols and slots.symbol is None:
                slots.symbol = symbols[key]
        original = _PAIR_RE.sub(
            lambda m: " SYMBOL " if (m.group(1) + m.group(2)).upper() in symbols else m.group(0), original
        )
        for word in re.findall(r"\b[A-Za-z]{5,10}\b", original):
            if word.upper() in symbols and slots.symbol is None:
                slots.symbol = symbols[word.upper()]

        # Upper-case country codes only ("US", not the pronoun "us").
        for code in re.findall(r"\b([A-Z]{2})\b", original):
            if code in COUNTRY_CODES and slots.country is None:
                slots.country = code

        lowered = original.lower().replace("'s", "").replace("-", " ").replace("/", " ")
        venues = tuple(vocab.venues)
        entity_words = tuple(
            word for name in vocab.entities[:2000] for word in name.lower().split() if word.isalpha() and len(word) > 4
        )
        words = []
        for raw in _TOKEN_RE.findall(lowered):
            word = str(NUMBER_WORDS.get(raw, raw)) if raw not in ("a", "an") else raw
            words.append(_correct(word, venues + entity_words))
        text = " ".join(words)
        text = re.sub(r"\b(a|an) (hour|day|week|month|minute)\b", r"1 \2", text)
        text = re.sub(r"\b(\d+)(hours|hour|hrs|days|day|mins|min|weeks|week)\b", r"\1 \2", text)

        time_range, rest = _time_range(text, now_ms)
        if time_range is not None:
            slots.time = asdict(time_range)
        slots.limit = _limit(rest)
        slots.resolution = _resolution(rest)

        # Entities by name (longest first), before categories: "Tornado Cash" is not "cash".
        for name in vocab.entities:
            lowered_name = " ".join(_TOKEN_RE.findall(name.lower()))
            if lowered_name and len(lowered_name) >= 3 and _has(rest, lowered_name):
                slots.entity = name
                rest = f" {rest} ".replace(f" {lowered_name} ", " ENTITY ").strip()
                break
        for venue in venues:
            if _has(rest, venue.lower()):
                slots.venue = venue
                break

        slots.category = _first_key(rest, CATEGORIES)
        for name, code in sorted(COUNTRIES.items(), key=lambda item: -len(item[0])):
            if _has(rest, name):
                slots.country = code
                break
        for word, asset in ASSET_WORDS.items():
            if _has(rest, word):
                slots.asset = asset
                break
        for word, chain in CHAIN_WORDS.items():
            if _has(rest, word) and slots.chain is None:
                slots.chain = chain
            if _has(rest, word) and slots.base is None:
                slots.base = BASE_WORDS.get(word)
        if slots.base is None:
            for word, base in BASE_WORDS.items():
                if _has(rest, word):
                    slots.base = base
                    break
        if _has(rest, "eth", "ether"):
            slots.extras["coin"] = "ETH"
        elif _has(rest, "btc"):
            slots.extras["coin"] = "BTC"
        nouns = ("transfer", "trade", "transaction", "query", "candle", "entry", "movement")
        if _has(rest, *nouns) and not _has(rest, *(noun + "s" for noun in nouns), "entries"):
            slots.extras["singular"] = True
        slots.aggregate = _first_key(rest, AGGREGATES)
        slots.group = _first_key(rest, GROUPS)
        if _has(rest, "outgoing", "sent", "send", "sending", "outflow", "outflows", "withdrawals", "paid"):
            slots.direction = "out"
        elif _has(rest, "incoming", "received", "receive", "receiving", "inflow", "inflows", "deposits"):
            slots.direction = "in"
        if _has(rest, "buy", "buys", "bought") and not _has(rest, "sell", "sells", "sold"):
            slots.side = "buy"
        elif _has(rest, "sell", "sells", "sold") and not _has(rest, "buy", "buys", "bought"):
            slots.side = "sell"
        slots.entry_type = _first_key(rest, ENTRY_TYPES)
        slots.action = _first_key(rest, CREDIT_ACTIONS)
        if _has(rest, "ofac"):
            slots.source = "ofac"
        if _has(rest, "delisted", "removed", "no longer listed", "unlisted"):
            slots.delisted = True
        if _has(rest, "largest", "biggest", "highest", "most", "top", "heaviest"):
            slots.order = "desc"
        elif _has(rest, "smallest", "lowest", "least", "cheapest"):
            slots.order = "asc"
        if _has(rest, "latest", "last", "recent", "newest", "current", "now"):
            slots.extras["latest"] = True
        if _has(rest, "oldest", "earliest", "first"):
            slots.extras["oldest"] = True

        scores = {table: sum(w for phrase, w in pairs if _has(rest, phrase)) for table, pairs in TABLE_WORDS.items()}
        risk = _has(rest, *RISK_WORDS)
        follow_up = any(f" {rest.strip()} ".startswith(f" {marker}") for marker in FOLLOW_UP) or len(words) <= 4
        slots.extras["text"] = rest.strip()
        return Parsed(slots, rest, scores, risk, follow_up, invalid, problems)

    # ---------------------------------------------------------- choosing

    def _table(self, parsed: Parsed) -> str | None:
        s, text, scores = parsed.slots, parsed.text, dict(parsed.scores)
        if scores["credit_entries"] >= 2 or (
            scores["credit_entries"] and not any(scores[t] for t in scores if t != "credit_entries")
        ):
            return "credit_entries"
        if scores["candles"] >= 3 or (s.resolution and (s.symbol or s.base) and scores["candles"]):
            return "candles"
        addressy = _has(text, "address", "addresses", "wallet", "wallets")
        if scores["transfers"] >= 2 and scores["transfers"] >= scores["trades"]:
            return "transfers"
        if _has(text, "volume") and (s.address or s.asset or (addressy and s.chain)) and not s.symbol:
            return "transfers"
        if scores["trades"] >= 2 or (s.symbol and not scores["transfers"]):
            return "trades"
        if _has(text, "volume") and (s.symbol or s.venue):
            return "trades"
        if scores["labels"] >= 2 or s.address or (s.category and addressy):
            return None  # labels are the semantic translator's
        if _has(text, "volume") and s.chain:
            return "transfers"
        return None

    def translate(
        self,
        question: str,
        *,
        history: list[Turn],
        context: ChatContext,
        now_ms: int,
        application_id: str = "",
        on_delta: ProgressCallback | None = None,
    ) -> Translation:
        refused = refusal(question, application_id)
        if refused is not None:
            return Translation("refuse", refused.text, code=refused.code)
        parsed = self.parse(question, now_ms)
        s = parsed.slots
        if parsed.invalid_address:
            return Translation("clarify", f"{parsed.invalid_address}. Which address did you mean?", slots=asdict(s))

        table = self._table(parsed)
        previous = next((turn.slots for turn in reversed(history) if turn.slots), None)
        explicit = max(parsed.scores.values()) >= 2
        if previous and (table is None or (parsed.follow_up and (not explicit or table == previous.get("table")))):
            s = self._merge(previous, s, parsed)
            table = s.table
            # The builders read cue words too ("price", "top", "spend"): a
            # follow-up inherits those of the turn it follows.
            earlier = str((previous.get("extras") or {}).get("text", ""))
            parsed.text = f"{earlier} {parsed.text}".strip()
            s.extras["text"] = parsed.text
            parsed.risk = parsed.risk or s.intent == "risk"

        # The client's context fills what the question leaves out.
        if s.symbol is None and s.base is None and context.symbol:
            s.symbol = context.symbol
        if (
            s.address is None
            and context.address
            and (parsed.risk or table in (None, "labels", "addresses", "transfers"))
        ):
            chain = context.chain or (ETHEREUM if context.address.lower().startswith("0x") else BITCOIN)
            with contextlib.suppress(InvalidAddress, ValueError):
                s.address, s.chain = normalize_chain_address(chain, context.address), chain
        if s.chain is None and context.chain in (ETHEREUM, BITCOIN):
            s.chain = context.chain
        if table is None and s.symbol and context.symbol and not parsed.risk:
            table = "trades"

        if table is None:
            return Translation(
                "clarify",
                "I am not sure what you are asking. I can answer questions about trades and candles (e.g. "
                '"BTC-USD 1m candles for the last hour"), on-chain transfers ("top 10 ethereum addresses by '
                'outgoing volume last week"), labels and entities ("which addresses are sanctioned?"), address '
                'risk ("what is the risk of 0x…?"), your credits ("how many credits did I spend this month?") '
                'and your queries ("how many of my queries failed today?"). Which of these do you mean?',
                slots=asdict(s),
            )
        s.table = table
        builder = getattr(self, f"_build_{table}")
        translation: Translation = builder(s, parsed)
        if translation.kind == "sql" and not translation.slots:
            translation.slots = asdict(s)
        return translation

    def _merge(self, previous: dict[str, Any], new: Slots, parsed: Parsed) -> Slots:
        merged = Slots(**{key: value for key, value in previous.items() if key in Slots.__dataclass_fields__})
        merged.extras = {**(merged.extras or {}), **new.extras}
        table = merged.table
        for key, value in asdict(new).items():
            if key in ("table", "intent", "extras"):
                continue
            if value not in (None, False, {}):
                setattr(merged, key, value)
        # "and on bitcoin?": a chain word moves a market question to that
        # symbol and an on-chain question to that chain (dropping an address
        # of the other chain).
        if new.chain and table in ("trades", "candles") and new.symbol is None:
            merged.symbol = None
            merged.base = new.base
        if new.chain and merged.address and new.address is None and previous.get("chain") != new.chain:
            merged.address = None
        if new.base and table in ("trades", "candles") and new.symbol is None:
            merged.symbol = None
        if new.symbol:
            merged.base = None
        if new.asset is None and new.chain and previous.get("chain") != new.chain:
            merged.asset = None
        merged.table = table
        return merged

    # ------------------------------------------------------------ helpers

    def _symbol(self, s: Slots) -> str | None:
        if s.symbol:
            return s.symbol
        if s.base:
            candidates = [sym for sym in self.vocabulary.symbols if sym.split("-")[0] == s.base]
            for quote in QUOTE_PREFERENCE:
                if f"{s.base}-{quote}" in candidates:
                    return f"{s.base}-{quote}"
            if candidates:
                return candidates[0]
            return f"{s.base}-USD"
        return None

    def _ask_symbol(self, s: Slots, what: str) -> Translation:
        known = ", ".join(self.vocabulary.symbols[:8]) or "none yet"
        return Translation("clarify", f"Which symbol do you mean for {what}? Known symbols: {known}.", slots=asdict(s))

    @staticmethod
    def _ms_window(s: Slots, column: str, where: list[str], params: dict[str, Any]) -> str:
        time = s.time_range()
        if time is None:
            return ""
        where.append(f"{column} >= :since")
        params["since"] = time.start_ms
        if time.end_ms is not None:
            where.append(f"{column} < :until")
            params["until"] = time.end_ms
        return _window_words(time.label)

    @staticmethod
    def _ts_window(s: Slots, column: str, where: list[str], params: dict[str, Any]) -> str:
        """Timestamp columns compare with UTC text ('YYYY-MM-DD HH:MM:SS'): the
        form Django stores on SQLite, and a literal PostgreSQL reads in the
        query session's UTC."""
        time = s.time_range()
        if time is None:
            return ""
        where.append(f"{column} >= :since")
        params["since"] = _utc_text(time.start_ms)
        if time.end_ms is not None:
            where.append(f"{column} < :until")
            params["until"] = _utc_text(time.end_ms)
        return _window_words(time.label)

    @staticmethod
    def _sql(select: str, table: str, where: list[str], tail: str = "") -> str:
        if table in ("trades", "candles") and "venue" not in select and not any("venue" in w for w in where):
            # Market tables join their venue: a statement that reads nothing
            # of it is refused by the SQLite authorizer of the query engine.
            where = [*where, "venue IS NOT NULL"]
        # Select lists, tables and predicates are this module's own fixed
        # text; values reach the statement only as :name parameters.
        text = f"SELECT {select} FROM {table}"  # noqa: S608
        if where:
            text += " WHERE " + " AND ".join(where)
        return text + (" " + tail if tail else "")

    @staticmethod
    def _sql_translation(description: str, sql: str, params: dict[str, Any], s: Slots, **kw: Any) -> Translation:
        s.intent = s.intent or kw.pop("intent", None)
        return Translation("sql", description, sql=sql, params=params, slots=asdict(s), **kw)

    # ----------------------------------------------------------- builders

    def _build_trades(self, s: Slots, parsed: Parsed) -> Translation:
        text = parsed.text
        symbol = self._symbol(s)
        where: list[str] = []
        params: dict[str, Any] = {}
        if symbol is None and s.group != "symbol" and not _has(text, "symbols", "markets", "pairs", "which symbol"):
            return self._ask_symbol(s, "trades")
        subject = f"{symbol} trades" if symbol else "trades"
        if symbol:
            where.append("symbol = :symbol")
            params["symbol"] = symbol
            s.symbol, s.base = symbol, None
        if s.venue and s.group != "venue":
            where.append("venue = :venue")
            params["venue"] = s.venue
            subject += f" on {s.venue}"
        if s.side and s.group != "side":
            where.append("side = :side")
            params["side"] = s.side
            subject = f"{s.side} " + subject
        window = self._ms_window(s, "ts", where, params)
        description = subject + window
        vwap = _has(text, "vwap", "volume weighted")
        volume = _has(text, "volume", "size", "quantity", "amount traded", "traded")
        price = _has(text, "price", "prices")

        if symbol is None or s.group == "symbol":
            s.intent = "by_symbol"
            sql = self._sql(
                "symbol, count(ts) AS trades, sum(size) AS volume", "trades", where, "GROUP BY symbol ORDER BY symbol"
            )
            return self._sql_translation(f"trades per symbol{window}", sql, params, s)
        group = s.group if s.group in ("venue", "side", "day") else None
        group_col = {"venue": "venue", "side": "side", "day": "(ts / 86400000) * 86400000"}.get(group or "")
        group_name = {"venue": "venue", "side": "side", "day": "day"}.get(group or "")

        measure: tuple[str, str, str] | None = None  # (sql, name, unit)
        if vwap:
            measure = ("sum(price * size) / sum(size)", "vwap", "")
        elif s.aggregate == "count" or (_has(text, "how many") and not volume):
            measure = ("count(ts)", "trades", "")
        elif s.aggregate in ("avg", "max", "min") and (price or not volume):
            func = s.aggregate
            measure = (f"{func}(price)", f"{func}_price", "")
        elif s.aggregate == "avg" and volume:
            measure = ("avg(size)", "avg_size", "")
        elif volume or s.aggregate == "sum":
            measure = ("sum(size)", "volume", "")
        if measure is not None:
            s.intent = "aggregate"
            sql_expr, name, _ = measure
            if group_col:
                sql = self._sql(
                    f"{group_col} AS {group_name}, {sql_expr} AS {name}",
                    "trades",
                    where,
                    f"GROUP BY {group_col} ORDER BY {group_name}",
                )
                return self._sql_translation(
                    f"{name.replace('_', ' ')} of {description} per {group_name}", sql, params, s
                )
            sql = self._sql(f"{sql_expr} AS {name}", "trades", where)
            return self._sql_translation(f"{name.replace('_', ' ')} of {description}", sql, params, s, shape="value")

        columns = "ts, venue, price, size, side"
        if price and (s.limit is None or s.limit == 1) and not _has(text, "largest", "biggest", "trades"):
            s.intent = "latest_price"
            if group_col == "venue":
                sql = self._sql(
                    "venue, price, ts",
                    "trades AS t",
                    [*where, "ts = (SELECT max(ts) FROM trades AS u WHERE u.symbol = t.symbol AND u.venue = t.venue)"],
                    "ORDER BY venue",
                )
                return self._sql_translation(f"latest price of {description} per venue", sql, params, s)
            sql = self._sql(columns, "trades", where, "ORDER BY ts DESC, trade_id DESC LIMIT 1")
            return self._sql_translation(f"latest {description}", sql, params, s, shape="latest")
        limit = s.limit or DEFAULT_ROWS
        if s.order == "desc" and _has(text, "largest", "biggest", "heaviest", "top"):
            s.intent = "largest"
            sql = self._sql(columns, "trades", where, f"ORDER BY size DESC, ts DESC LIMIT {limit}")
            return self._sql_translation(f"the {limit} largest {description}", sql, params, s)
        s.intent = "latest"
        sql = self._sql(columns, "trades", where, f"ORDER BY ts DESC, trade_id DESC LIMIT {limit}")
        return self._sql_translation(f"the {limit} latest {description}", sql, params, s)

    def _build_candles(self, s: Slots, parsed: Parsed) -> Translation:
        text = parsed.text
        symbol = self._symbol(s)
        if symbol is None:
            return self._ask_symbol(s, "candles")
        s.symbol, s.base = symbol, None
        resolution = s.resolution or "1m"
        if resolution not in STORED_RESOLUTIONS:
            s.resolution = None
            return Translation(
                "clarify",
                f"The candles table stores {', '.join(STORED_RESOLUTIONS)} candles; {resolution} candles are served "
                f"by request_market_data. Which stored resolution should I use?",
                slots=asdict(s),
            )
        where = ["symbol = :symbol", "resolution = :resolution"]
        params: dict[str, Any] = {"symbol": symbol, "resolution": resolution}
        subject = f"{symbol} {resolution} candles"
        if s.venue:
            where.append("venue = :venue")
            params["venue"] = s.venue
            subject += f" on {s.venue}"
        window = self._ms_window(s, "ts", where, params)
        description = subject + window
        aggregate = s.aggregate
        highest = aggregate is None and _has(text, "highest", "high of") and not _has(text, "show", "list")
        if aggregate == "max" or highest:
            s.intent = "aggregate"
            sql = self._sql("max(high) AS high", "candles", where)
            return self._sql_translation(f"highest price in {description}", sql, params, s, shape="value")
        if aggregate == "min":
            s.intent = "aggregate"
            sql = self._sql("min(low) AS low", "candles", where)
            return self._sql_translation(f"lowest price in {description}", sql, params, s, shape="value")
        if aggregate == "count":
            s.intent = "aggregate"
            sql = self._sql("count(ts) AS candles", "candles", where)
            return self._sql_translation(f"number of {description}", sql, params, s, shape="value")
        if aggregate == "sum" or (
            _has(text, "volume") and aggregate in (None, "sum") and not _has(text, "show", "list")
        ):
            s.intent = "aggregate"
            sql = self._sql("sum(volume) AS volume", "candles", where)
            return self._sql_translation(f"total volume of {description}", sql, params, s, shape="value")
        if aggregate == "avg":
            s.intent = "aggregate"
            sql = self._sql("avg(close) AS avg_close", "candles", where)
            return self._sql_translation(f"average close of {description}", sql, params, s, shape="value")
        s.intent = "list"
        columns = "ts, venue, open, high, low, close, volume, trades"
        limit = s.limit or MAX_ROWS
        if s.time is None:
            sql = self._sql(columns, "candles", where, f"ORDER BY ts DESC, venue LIMIT {limit}")
            return self._sql_translation(f"the latest {limit} {description}", sql, params, s)
        sql = self._sql(columns, "candles", where, f"ORDER BY ts, venue LIMIT {limit}")
        return self._sql_translation(description, sql, params, s)

    def _build_transfers(self, s: Slots, parsed: Parsed) -> Translation:
        text = parsed.text
        where: list[str] = []
        params: dict[str, Any] = {}
        chain = s.chain
        coin = s.extras.get("coin")
        if s.asset is None and coin and NATIVE_ASSET.get(chain or "") == coin:
            s.asset = coin
        if s.asset and chain is None:
            chain = BITCOIN if s.asset == "BTC" else ETHEREUM
        if s.asset == "ETH" and chain == BITCOIN:
            s.asset = None
        asset = s.asset
        if chain:
            where.append("chain = :chain")
            params["chain"] = chain
        subject = "transfers"
        window_where: list[str] = []
        window = self._ms_window(s, "ts", window_where, params)
        ranking = _has(text, "addresses", "address", "wallets", "senders", "receivers", "recipients", "who")
        ranking = ranking and (s.order == "desc" or s.limit is not None or _has(text, "who", "most")) and not s.address
        counterparties = s.address and _has(
            text, "counterparties", "counterparty", "to whom", "who", "most to", "most from"
        )

        if ranking or counterparties:
            if chain is None:
                return Translation("clarify", "On which chain: ethereum or bitcoin?", slots=asdict(s))
            asset = asset or NATIVE_ASSET.get(chain)
            where.append("asset = :asset")
            params["asset"] = asset
            direction = s.direction or "out"
            if counterparties:
                own, other = ("from_address", "to_address") if direction == "out" else ("to_address", "from_address")
                where.append(f"{own} = :address")
                params["address"] = s.address
                column = other
                label = f"counterparties {'receiving from' if direction == 'out' else 'sending to'} {s.address}"
            else:
                column = "from_address" if direction == "out" else "to_address"
                where.append(f"{column} IS NOT NULL")
                label = f"{chain} addresses by {'outgoing' if direction == 'out' else 'incoming'} volume"
            limit = s.limit or DEFAULT_ROWS
            by_count = _has(text, "number of transfers", "most transfers", "most active", "count")
            order = "transfers DESC, volume DESC" if by_count else "volume DESC, transfers DESC"
            s.intent = "rank_addresses"
            s.chain, s.asset = chain, asset
            sql = self._sql(
                f"{column} AS address, sum(amount) AS volume, count(ts) AS transfers",
                "transfers",
                where + window_where,
                f"GROUP BY {column} ORDER BY {order}, address LIMIT {limit}",
            )
            return self._sql_translation(f"top {limit} {label} in {asset}{window}", sql, params, s, unit=asset or "")

        if s.address:
            if s.direction == "out":
                where.append("from_address = :address")
                subject = f"transfers sent by {s.address}"
            elif s.direction == "in":
                where.append("to_address = :address")
                subject = f"transfers received by {s.address}"
            else:
                where.append("(from_address = :address OR to_address = :address)")
                subject = f"transfers of {s.address}"
            params["address"] = s.address
        elif chain:
            subject = f"{chain} transfers"
        if asset:
            where.append("asset = :asset")
            params["asset"] = asset
            subject = f"{asset} " + subject
        where += window_where
        description = subject + window
        s.chain = chain

        aggregate = s.aggregate
        volume = _has(text, "volume", "amount", "value", "how much", "total")
        if aggregate == "count" and not (volume and aggregate != "count"):
            s.intent = "count"
            if s.group in ("asset", "chain", "day"):
                return self._grouped_transfers(s, where, params, description, "count(ts) AS transfers")
            sql = self._sql("count(ts) AS transfers", "transfers", where)
            return self._sql_translation(f"number of {description}", sql, params, s, shape="value")
        if aggregate in ("sum", "avg", "max", "min") or (
            volume and aggregate is None and not _has(text, "show", "list")
        ):
            func = aggregate if aggregate in ("avg", "max", "min") else "sum"
            name = {"sum": "volume", "avg": "avg_amount", "max": "max_amount", "min": "min_amount"}[func]
            s.intent = "amount"
            if asset is None:
                # Amounts of different assets do not add up: one row per asset.
                return self._grouped_transfers(
                    s, where, params, description, f"{func}(amount) AS {name}, count(ts) AS transfers", force="asset"
                )
            sql = self._sql(f"{func}(amount) AS {name}", "transfers", where)
            return self._sql_translation(
                f"{name.replace('_', ' ')} of {description}", sql, params, s, shape="value", unit=asset
            )
        limit = s.limit or (1 if s.extras.get("singular") else DEFAULT_ROWS)
        columns = "ts, tx_hash, from_address, to_address, asset, amount"
        if s.order == "desc" and _has(text, "largest", "biggest", "top", "highest"):
            if asset is None and chain is None:
                return Translation(
                    "clarify", "Largest transfers of which asset (ETH, BTC, USDT, ...)?", slots=asdict(s)
                )
            if asset is None:
                asset = NATIVE_ASSET.get(chain or "")
                where.append("asset = :asset")
                params["asset"] = asset
                s.asset = asset
                description = f"{asset} {description}"
            s.intent = "largest"
            sql = self._sql(columns, "transfers", where, f"ORDER BY amount DESC, ts DESC LIMIT {limit}")
            return self._sql_translation(f"the {limit} largest {description}", sql, params, s)
        if chain is None and not s.address:
            return Translation("clarify", "Transfers on which chain: ethereum or bitcoin?", slots=asdict(s))
        s.intent = "latest"
        sql = self._sql(columns, "transfers", where, f"ORDER BY ts DESC, tx_hash LIMIT {limit}")
        return self._sql_translation(f"the {limit} latest {description}", sql, params, s)

    def _grouped_transfers(
        self, s: Slots, where: list[str], params: dict[str, Any], description: str, select: str, force: str = ""
    ) -> Translation:
        group = force or s.group or "asset"
        column = {"asset": "asset", "chain": "chain", "day": "(ts / 86400000) * 86400000"}[group]
        sql = self._sql(f"{column} AS {group}, {select}", "transfers", where, f"GROUP BY {column} ORDER BY {group}")
        return self._sql_translation(f"{description} per {group}", sql, params, s)

    def _build_credit_entries(self, s: Slots, parsed: Parsed) -> Translation:
        text = parsed.text
        where: list[str] = []
        params: dict[str, Any] = {}
        window = self._ts_window(s, "created_at", where, params)
        if _has(text, "balance", "left", "remaining", "do i have", "have left") and not _has(text, "spent", "spend"):
            s.intent = "balance"
            sql = self._sql("balance_after AS balance", "credit_entries", [], "ORDER BY sequence DESC LIMIT 1")
            return self._sql_translation("your credit balance", sql, params, s, shape="value", unit="credits")
        if _has(text, "lifetime"):
            s.intent = "lifetime"
            column = "lifetime_earned_after" if _has(text, "earned", "granted", "received") else "lifetime_spent_after"
            name = column.replace("_after", "")
            sql = self._sql(f"{column} AS {name}", "credit_entries", [], "ORDER BY sequence DESC LIMIT 1")
            return self._sql_translation(
                f"your {name.replace('_', ' ')}", sql, params, s, shape="value", unit="credits"
            )
        spending = _has(text, "spent", "spend", "spending", "used", "consumed", "cost", "pay", "paid")
        action = s.action if spending or s.group != "action" else None
        if action and spending:
            where.append("action = :action")
            params["action"] = action
        action_label = f" on {ACTION_NOUNS.get(action, action)}" if action and spending else ""
        if spending and s.group == "action":
            s.intent = "spent_by_action"
            sql = self._sql(
                "action, sum(spent) AS spent",
                "credit_entries",
                [*where, "spent > 0"],
                "GROUP BY action ORDER BY spent DESC, action",
            )
            return self._sql_translation(f"credits you spent per action{window}", sql, params, s)
        if spending and s.entry_type is None:
            s.intent = "spent"
            sql = self._sql("coalesce(sum(spent), 0) AS spent", "credit_entries", where)
            return self._sql_translation(
                f"credits you spent{action_label}{window}", sql, params, s, shape="value", unit="credits"
            )
        if s.entry_type:
            where.append("type = :type")
            params["type"] = s.entry_type
        kind = f"{s.entry_type} entries" if s.entry_type else "credit entries"
        if s.group == "type":
            s.intent = "by_type"
            sql = self._sql(
                "type, count(*) AS entries, sum(amount) AS amount",
                "credit_entries",
                where,
                "GROUP BY type ORDER BY type",
            )
            return self._sql_translation(f"your credit entries per type{window}", sql, params, s)
        if s.aggregate == "count" and not _has(text, "how many credits"):
            s.intent = "count"
            sql = self._sql("count(*) AS entries", "credit_entries", where)
            return self._sql_translation(f"number of your {kind}{window}", sql, params, s, shape="value")
        if s.entry_type and (s.aggregate in ("sum", "count") or _has(text, "how many credits", "how much")):
            s.intent = "sum"
            sql = self._sql("coalesce(sum(amount), 0) AS amount", "credit_entries", where)
            return self._sql_translation(
                f"credits in your {kind}{window}", sql, params, s, shape="value", unit="credits"
            )
        s.intent = "list"
        limit = s.limit or DEFAULT_ROWS
        sql = self._sql(
            "sequence, type, amount, balance_after, action, created_at",
            "credit_entries",
            where,
            f"ORDER BY sequence DESC LIMIT {limit}",
        )
        return self._sql_translation(f"your {limit} latest {kind}{window}", sql, params, s)

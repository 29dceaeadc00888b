"""A question parsed into an intent over the semantic model.

Values are lifted out first (symbols as written, the time window, buckets,
limits), the rest is lower-cased and split into words; a word that is not
known is compared with the known words that carry meaning (difflib): it is
corrected only when one reading is clearly the closest (the answer says
"read 'yesterdy' as 'yesterday'"); when two readings are about as close,
or the closest is only somewhat close, the parser asks which one was meant
instead of answering another question with confidence. Each word is
then used (a table noun, a measure, a grouping, a filter value, an order)
or is a filler word; whatever is left is reported in ``unused`` so that the
answer can say what it could not use instead of answering a narrower
question with confidence.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from chat import semantic
from chat.bounds import OPERATORS, lift_bounds
from chat.chainwords import find_address
from chat.intent_chain import asks_addresses, asks_labels, names_entities, read_catalog
from chat.intent_credits import read_credits
from chat.intent_queries import read_queries
from chat.intent_transfers import COINS, DIRECTION_WORDS, asks_transfers, read_transfers
from chat.lexicon import AGGREGATE_WORDS, BASES, COUNTRY_CODES, FILLER, GROUP_LEADS, ORDERS, SIDES
from chat.spelling import DOUBT, DOUBT_SHORT, MAX_EDITS, RIVAL_MARGIN, SURE, SURE_SHORT, edits, fuzzy_candidates
from chat.timewords import MONTHS, NUMBER_WORDS, TIME_WORDS, UNIT_ALIASES, UNITS_MS, WEEKDAYS, find_window
from chat.vocabulary import Vocabulary

MAX_ROWS = 100
FOLLOW_UP = re.compile(r"^\s*(?:and|what about|how about|now|only|same|then|just|ok|okay|also|but)\b")
# A market as written ("BTC-USD", "eth/usd"); its base starts with a letter,
# so "15-minute" is a bucket, not an unknown market.
SYMBOL_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9]{1,9})\s*[-/]\s*([A-Za-z0-9]{2,10})\b")
BUCKET_WORDS = {"hourly": "1h", "daily": "1d", "minutely": "1m"}
_UNIT_WORD = r"(seconds?|secs?|minutes?|mins?|hours?|hrs?|days?)"
BUCKET_RE = re.compile(
    r"\b(?:(?:in|by|per|every|each)\s+)?(?:(\d+)\s*-?\s*(?:" + _UNIT_WORD[1:-1] + r"|[smhd])"
    r"|(" + "|".join(NUMBER_WORDS) + r")[\s-]+" + _UNIT_WORD + r"|(?:per|by|every|each)\s+" + _UNIT_WORD + r")\b"
    r"(?:\s*(?:buckets?|intervals?|bins?|windows?))?"
)
_COUNT = r"(\d+|" + "|".join(w for w in NUMBER_WORDS if len(w) > 2) + r")"
LIMIT_RE = re.compile(
    r"\b(?:top|which|last|latest|first|recent|biggest|largest|smallest|oldest|newest|slowest|fastest)\s+"
    + _COUNT
    + r"\b"
    r"|\b" + _COUNT + r"\s+(?:largest|biggest|latest|last|most\s+recent|recent|smallest|oldest|newest|slowest|fastest|"
    r"longest|quickest|trades|candles|queries)\b"
)


@dataclass
class Intent:
    table: str | None = None
    measure: str | None = None
    filters: dict[str, str] = field(default_factory=dict)
    window: dict[str, Any] | None = None  # start_ms, end_ms, words
    bucket: str | None = None  # "5m", "1h": a time grouping (trades) or a resolution (candles)
    group: str | None = None
    order: str | None = None
    limit: int | None = None
    base: str | None = None  # "BTC" when the question names an asset, not a market
    unused: list[str] = field(default_factory=list)
    ambiguous: str = ""  # a clarifying question
    follow_up: bool = False
    corrections: list[str] = field(default_factory=list)  # "'yesterdy' as 'yesterday'"
    named: str | None = None  # an entity named in the question ("Tornado Cash")
    address: str | None = None  # an address in the question, normalised
    address_chain: str | None = None  # its chain
    flag_off: bool = False  # the false rows of the table's flag ("delisted" labels)
    country: str | None = None  # a country code written as such ("US")
    party: str | None = None  # whose transfers: "from_address", "to_address" or "address" (either)
    bounds: list[list[str]] = field(default_factory=list)  # [operator, number] on the size column ("over 100")
    other_address: str | None = None  # a second address ("from 0x… to 0x…")

    def slots(self) -> dict[str, Any]:
        return {"engine": "semantic", **asdict(self)}


def _stem(word: str) -> str:
    return word.removesuffix("s")


def _bucket(count: str | None, unit: str) -> str:
    number = NUMBER_WORDS.get(count or "", None) or int(count or 1)
    suffix = {"second": "s", "minute": "m", "hour": "h", "day": "d"}[UNIT_ALIASES.get(unit, unit)]
    return f"{number}{suffix}"


def bucket_ms(bucket: str) -> int:
    unit = {"s": "second", "m": "minute", "h": "hour", "d": "day"}[bucket[-1]]
    return int(bucket[:-1]) * UNITS_MS[unit]


class Parser:
    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.symbols = {s.upper(): s for s in vocabulary.symbols}
        self.venues = {v.lower(): v for v in vocabulary.venues}
        self.assets = frozenset(a.upper() for a in vocabulary.assets)
        words: set[str] = set(FILLER) | set(SIDES) | set(ORDERS) | set(BASES) | set(self.venues)
        for entity in semantic.MODEL.values():
            words.update(entity.nouns)
            for measure in entity.measures:
                words.update(w for phrase in measure.words for w in phrase.split())
            for dimension in entity.dimensions:
                words.update(w for phrase in dimension.words for w in phrase.split())
                words.update(w for phrase, _ in dimension.synonyms for w in phrase.split())
        words |= set(UNIT_ALIASES) | set(NUMBER_WORDS) | {"buckets", "bucket", "interval", "intervals", "candles"}
        words |= {"price", "hourly", "daily", "average", "highest", "lowest", "maximum", "minimum"}
        words |= {part.lower() for symbol in self.symbols for part in symbol.split("-")}
        words |= {word for phrase in OPERATORS for word in phrase.split()}  # "at least": not "last"
        words |= (
            {asset.lower() for asset in self.assets} | DIRECTION_WORDS | set(COINS) | {"sender", "receiver", "whom"}
        )
        words |= set(TIME_WORDS) | set(WEEKDAYS) | {m for m in MONTHS if len(m) > 3}
        self.known = sorted(w for w in words if w.isalpha() and len(w) >= 3)
        # Misspellings are corrected towards words that carry meaning only:
        # an unknown word must not vanish into a filler ("wash" is not "was").
        meaning = {w for phrase in semantic.COUNT_WORDS for w in phrase.split()} | set(TIME_WORDS)
        comparing = {word for phrase in OPERATORS for word in phrase.split()}  # known, never a correction
        self.targets = sorted(w for w in self.known if (w not in FILLER or w in meaning) and w not in comparing)
        self.corrections: dict[str, str] = {}
        self.doubts: dict[str, list[str]] = {}
        self.protected: set[str] = set()  # words of a name found as written
        self.follows: semantic.Entity | None = None

    def _correct(self, word: str) -> str:
        if word in self.known or word in self.protected or not word.isalpha() or len(word) < 3:
            return word
        if word in self.corrections:
            return self.corrections[word]
        candidates = fuzzy_candidates(word, self.targets, DOUBT_SHORT if len(word) <= 4 else DOUBT)
        # A misspelling is a slip or two of the keys, not another word.
        reach = 1 if len(word) <= 4 else MAX_EDITS
        candidates = [(w, score) for w, score in candidates if edits(word, w) <= reach]
        if not candidates:
            return word
        (best, score), rest = candidates[0], candidates[1:]
        # A rival is a reading about as alike that means something else; the
        # correction is certain only when the best is fewer edits away.
        rivals = [w for w, s in rest if score - s < RIVAL_MARGIN and _stem(w) != _stem(best)]
        nearest = edits(word, best)
        rivals = [w for w in rivals if edits(word, w) <= nearest]
        if score >= (SURE_SHORT if len(word) <= 4 else SURE) and not rivals:
            self.corrections[word] = best
            return best
        self.doubts[word] = [best, *rivals]
        return word

    def parse(self, question: str, now_ms: int, follows: str | None = None) -> Intent:
        """``follows``: the table of the turn before, if any."""
        self.corrections, self.doubts, self.protected = {}, {}, set()
        self.follows = semantic.MODEL.get(follows or "")
        intent = self._parse(question, now_ms)
        intent.corrections = [f"{wrong!r} as {right!r}" for wrong, right in self.corrections.items()]
        # A word that is only somewhat like a known one, or about as like
        # two: ask which was meant, never guess.
        for word, candidates in self.doubts.items():
            if word in intent.unused and not intent.ambiguous:
                offered = " or ".join(repr(c) for c in candidates)
                intent.ambiguous = f"I do not know the word {word!r}. Did you mean {offered}?"
        return intent

    def _parse(self, question: str, now_ms: int) -> Intent:
        intent = Intent(follow_up=bool(FOLLOW_UP.match(question.lower())))
        found = find_address(question)
        intent.address, intent.address_chain = found.address, found.chain
        intent.other_address = found.more[0] if found.more else None
        if found.invalid:
            intent.ambiguous = f"{found.invalid}. Which address did you mean?"
        text = self._lift_symbols(found.text, intent)
        text = self._lift_names(text, intent)
        text = " ".join(text.lower().replace("'s", " ").replace("?", " ").split())
        text = " ".join(self._correct(word) for word in text.split())
        text = re.sub(r"\bhalf\s+(?:an\s+)?hour\b", "30 minutes", text)
        window = find_window(text, now_ms)
        if window is not None:
            intent.window = {"start_ms": window.start_ms, "end_ms": window.end_ms, "words": window.words}
            text = text[: window.span[0]] + " " + text[window.span[1] :]
        text = self._lift_limit(text, intent)
        text, intent.bounds = lift_bounds(text)
        words = [self._correct(w) for w in re.findall(r"[a-z0-9#]+", text)]
        text = " " + " ".join(words) + " "
        text = self._lift_bucket(text, intent)
        self._read(text, intent)
        return intent

    def _lift_symbols(self, question: str, intent: Intent) -> str:
        def take(match: re.Match[str]) -> str:
            symbol = f"{match.group(1)}-{match.group(2)}".upper()
            if symbol in self.symbols:
                intent.filters["symbol"] = self.symbols[symbol]
                return " "
            intent.unused.append(match.group(0))
            return " "

        return SYMBOL_RE.sub(take, question)

    def _lift_names(self, text: str, intent: Intent) -> str:
        """Entity names as written (longest first: "Tornado Cash", not "cash"),
        and upper-case country codes ("US", not the pronoun "us")."""
        for name in self.vocabulary.entities:
            if len(name) < 3:
                continue
            match = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE)
            if match:
                # Left in the text: a question that does not use it (a
                # market question "on kraken") reports it, never drops it.
                intent.named = name
                self.protected = set(re.findall(r"[a-z0-9#]+", name.lower()))
                break
        match = re.search(r"\b([A-Z]{2})\b", text)
        if match and match.group(1) in COUNTRY_CODES:
            intent.country = match.group(1)
            text = text[: match.start()] + " " + text[match.end() :]
        return text

    def _lift_limit(self, text: str, intent: Intent) -> str:
        match = LIMIT_RE.search(text)
        if match:
            count = match.group(1) or match.group(2)
            intent.limit = max(1, min(NUMBER_WORDS.get(count) or int(count), MAX_ROWS))
            return (
                text[: match.start()] + " " + match.group(0).split()[0 if match.group(1) else -1] + text[match.end() :]
            )
        return text

    def _lift_bucket(self, text: str, intent: Intent) -> str:
        for word, bucket in BUCKET_WORDS.items():
            if f" {word} " in text:
                intent.bucket = bucket
                return text.replace(f" {word} ", " ", 1)
        match = BUCKET_RE.search(text)
        if match is not None:
            digits = re.match(r"\s*(?:(?:in|by|per|every|each)\s+)?(\d+)\s*-?\s*([a-z]+)", match.group(0))
            if digits:
                intent.bucket = _bucket(digits.group(1), digits.group(2))
            elif match.group(2):
                intent.bucket = _bucket(match.group(2), match.group(3))
            else:
                intent.bucket = _bucket(None, match.group(4))
            return text[: match.start()] + " " + text[match.end() :]
        return text

    def _read(self, text: str, intent: Intent) -> None:
        entity = self._table(text, intent)
        used: set[str] = set()
        if entity is None:
            # A follow-up ("now per venue") groups whatever table it follows.
            for candidate in (semantic.TRADES, semantic.CANDLES, semantic.CREDITS, semantic.TRANSFERS):
                self._group(text, candidate, intent, used)
            for dimension in semantic.CREDITS.dimensions:
                for phrase, value in dimension.synonyms:
                    if f" {phrase} " in text:
                        intent.filters[dimension.name] = value
                        used.update(phrase.split())
        if entity is not None:
            intent.table = entity.table
            used |= {w for noun in entity.nouns if f" {noun} " in text for w in noun.split()}
            self._measure(text, entity, intent, used)
            if entity.table in ("trades", "candles"):
                self._group(text, entity, intent, used)
        market = intent.table in (None, "trades", "candles")
        for word in text.split():
            if word in ORDERS and intent.order in (None, ORDERS[word]):
                intent.order = ORDERS[word]
                used.add(word)
            elif not market:
                continue
            elif word in self.venues and intent.group != "venue":
                intent.filters["venue"] = self.venues[word]
                used.add(word)
            elif word in SIDES and intent.group != "side":
                intent.filters["side"] = SIDES[word]
                used.add(word)
            elif word in BASES or word.upper() in {s.split("-")[0] for s in self.symbols}:
                intent.base = BASES.get(word, word.upper())
                used.add(word)
        one = {"trades": " trade ", "query_history": " query ", "transfers": " transfer "}.get(intent.table or "", "")
        if one and not intent.measure and intent.order and not intent.limit and one in text:
            intent.limit = 1  # "the latest trade", "the largest trade", "my slowest query"
        intent.unused += [w for w in text.split() if w not in used and w not in FILLER and not w.isdigit()]
        if intent.country and intent.table not in ("entities", "labels"):
            intent.unused.append(intent.country)
        # Nouns of other tables are not reported, except those of the asker's own
        # data ("the balance of 0x…" is not answered by labels without saying so).
        own = {
            w for e in semantic.MODEL.values() if e.own and e.table != intent.table for n in e.nouns for w in n.split()
        }
        intent.unused = [w for w in intent.unused if w in own or not any(w in n.split() for n in _all_nouns())]

    def _table(self, text: str, intent: Intent) -> semantic.Entity | None:
        scores = {name: sum(f" {noun} " in text for noun in entity.nouns) for name, entity in semantic.MODEL.items()}
        if scores["candles"]:
            return semantic.CANDLES
        spending = ("spend", "spent", "spending", "cost", "paid", "granted")
        own = intent.address is None  # an address's balance or spending is not the asker's credits
        if own and (scores["credit_entries"] or any(f" {word} " in text for word in spending)):
            return semantic.CREDITS
        if scores["query_history"]:
            return semantic.QUERIES
        if asks_transfers(text, intent, self.assets):
            return semantic.TRANSFERS
        if asks_labels(text, intent):
            return semantic.LABELS
        if scores["entities"] or names_entities(text, intent):
            return semantic.ENTITIES
        if asks_addresses(text, intent):
            return semantic.ADDRESSES
        market = any(f" {word} " in text for word in ("price", "vwap", "volume", "traded", "notional"))
        if scores["trades"] or market or ("symbol" in intent.filters and not intent.follow_up):
            return semantic.TRADES
        if self.follows is not None and self.follows.follows:
            intent.follow_up = True  # names no table: read as a follow-up of the turn before
            return self.follows
        return None

    def _measure(self, text: str, entity: semantic.Entity, intent: Intent, used: set[str]) -> None:
        best: tuple[int, str, str] | None = None
        for measure in entity.measures:
            for phrase in measure.words:
                index = text.find(f" {phrase} ")
                if index >= 0 and (best is None or len(phrase) > len(best[2])):
                    best = (index, measure.name, phrase)
        if entity.table == "credit_entries":
            read_credits(text, intent, used)
        elif entity.table == "query_history":
            read_queries(text, intent, used, best)
        elif entity.table in ("entities", "addresses", "labels"):
            read_catalog(text, entity, intent, used, best)
        elif entity.table == "transfers":
            read_transfers(text, intent, used, best, self.assets)
        elif entity.table == "trades":
            self._trade_measure(text, intent, best, used)
        elif best is not None:
            intent.measure = best[1]
            used.update(best[2].split())
        used.update(AGGREGATE_WORDS & set(text.split()))

    @staticmethod
    def _trade_measure(text: str, intent: Intent, best: tuple[int, str, str] | None, used: set[str]) -> None:
        def has(*words: str) -> bool:
            return any(f" {word} " in text for word in words)

        averaged = has("average", "avg", "mean")
        high, low = has("highest", "maximum", "max", "high", "peak"), has("lowest", "minimum", "min", "low")
        price = has("price", "prices") or " trading at " in text
        size = has("size", "sizes") or (best is not None and best[1] == "volume" and averaged)
        ranked = has("top", "largest", "biggest", "smallest") and has("by size", "by volume")
        if best is not None and not ranked:
            intent.measure = best[1]
            used.update(best[2].split())
        used.update({"price", "prices", "high", "low", "peak", "size", "sizes", "trading"} & set(text.split()))
        if averaged and intent.measure in (None, "volume", "avg_price", "avg_size"):
            if not price and not size:
                intent.ambiguous = "Do you mean the average price or the average trade size?"
            intent.measure = "avg_size" if size and not price else "avg_price"
        elif (high or low) and intent.measure in (None, "volume", "max_price", "min_price") and not size:
            intent.measure = "max_price" if high else "min_price"
        elif price and intent.measure in (None, "volume") and not has("volume", "how much") and not intent.bounds:
            intent.measure = None
            intent.order = intent.order or "latest"
            intent.limit = intent.limit or 1

    def _group(self, text: str, entity: semantic.Entity, intent: Intent, used: set[str]) -> None:
        for dimension in entity.dimensions:
            for phrase in dimension.words:
                for lead in GROUP_LEADS:
                    if f" {lead} {phrase} " in text or (" vs " in phrase and f" {phrase} " in text):
                        intent.group = dimension.name
                        used.update(phrase.split())
                        return
        if entity.table == "trades" and " buy vs sell " in text.replace(" versus ", " vs "):
            intent.group = "side"


def _all_nouns() -> list[str]:
    return [noun for entity in semantic.MODEL.values() for noun in entity.nouns]

"""Intents over the compliance tables of the catalog: entities (by category,
country or name), labels (an address's, or addresses by category, country,
chain, entity or source; "delisted" for the inactive ones) and addresses
(when seen, how many, on which chain). Which of them a question asks for is
read from its words: a question about transfers of addresses is none of
them (``chat.intent_transfers`` reads it).
"""

from __future__ import annotations

import re
from typing import Protocol

from chat import semantic
from chat.lexicon import GROUP_LEADS


class ChainIntent(Protocol):
    """The parts of ``chat.intent.Intent`` read and set here."""

    measure: str | None
    filters: dict[str, str]
    group: str | None
    base: str | None
    named: str | None
    country: str | None
    address: str | None
    address_chain: str | None
    flag_off: bool


# Words of a question about one address ("who owns 0x…?", "when was it first seen?").
_ABOUT_AN_ADDRESS = frozenset(
    [
        "address",
        "seen",
        "first",
        "last",
        "time",
        "when",
        "who",
        "whose",
        "owns",
        "owner",
        "known",
        "behind",
        "labelled",
        "labeled",
        "label",
        "labels",
        "any",
        "belong",
        "belongs",
        "is",
    ]
)
# Words of a question about labels (beyond the table's nouns).
_LABEL_WORDS = re.compile(r" (?:ofac|delisted|belong\w*|owns|owner|whose|who\s+is\s+behind|known\s+about|sanction\w*) ")
# Words of a question about transfers.
_TRANSFER_WORDS = re.compile(
    r" (?:transfer\w*|transactions?|tx|txs|sent|send\w*|receiv\w*|volume|counterpart\w*|outgoing|incoming|"
    r"inflows?|outflows?|deposits?|withdrawals?|moved|senders?|receivers?|recipients?) "
)
# Words of questions about labels, owners and transfers of addresses.
_OTHER_ADDRESS_WORDS = re.compile(
    r" (?:label\w*|tagged|sanction\w*|ofac|delisted|listed|belong\w*|owns?|owner|who|whose|known|entit\w*|"
    r"transfer\w*|transactions?|sent|send\w*|receiv\w*|volume|counterpart\w*|outgoing|incoming|most|top) "
)


def asks_labels(text: str, intent: ChainIntent) -> bool:
    """Who an address is (its labels, owner, category), or which addresses
    carry a label; not their transfers."""
    if _TRANSFER_WORDS.search(text):
        return False
    if any(f" {noun} " in text for noun in semantic.LABELS.nouns) or _LABEL_WORDS.search(text):
        return True
    if intent.address is not None:
        return not any(f" {word} " in text for word in ("seen", "active", "cluster"))
    if not any(f" {noun} " in text for noun in semantic.ADDRESSES.nouns):
        return False
    if intent.named or intent.country:
        return True
    phrases = (p for d in (semantic.CATEGORY, semantic.COUNTRY) for p, _ in d.synonyms)
    return any(f" {phrase} " in text for phrase in phrases)


def asks_addresses(text: str, intent: ChainIntent) -> bool:
    """Addresses themselves (when seen, how many, on which chain), not their
    labels, owners or transfers."""
    if not any(f" {noun} " in text for noun in semantic.ADDRESSES.nouns):
        return False
    if intent.named or _OTHER_ADDRESS_WORDS.search(text):
        return False
    if any(f" {phrase} " in text for phrase, _ in semantic.CATEGORY.synonyms):
        return False
    if intent.address is not None:
        return any(f" {word} " in text for word in ("seen", "active", "cluster"))
    asks = ("seen", "active", "cluster", "clusters", "how many", "number of", "count", "per chain", "by chain")
    return any(f" {word} " in text for word in asks) or any(f" {p} " in text for p, _ in semantic.CHAIN.synonyms)


def names_entities(text: str, intent: ChainIntent) -> bool:
    """An entity, a category or a country named outside a market question."""
    if "symbol" in intent.filters or intent.base:
        return False
    market = ("trades", "trade", "volume", "price", "vwap", "candles", "traded")
    if any(f" {word} " in text for word in market):
        return False
    if intent.named or intent.country:
        return True
    # "by exchange" groups (a follow-up of a market question); it names no category.
    text = re.sub(r" (?:" + "|".join(GROUP_LEADS) + r") \w+", " ", text)
    phrases = (p for d in (semantic.CATEGORY, semantic.COUNTRY) for p, _ in d.synonyms)
    return any(f" {phrase} " in text for phrase in phrases)


def read_catalog(
    text: str, entity: semantic.Entity, intent: ChainIntent, used: set[str], best: tuple[int, str, str] | None
) -> None:
    for dimension in entity.dimensions:
        for phrase in dimension.words:
            if any(f" {lead} {phrase} " in text for lead in GROUP_LEADS):
                intent.group = dimension.name
                used.update(phrase.split())
        for phrase, value in sorted(dimension.synonyms, key=lambda pair: -len(pair[0])):
            if f" {phrase} " in text and intent.group != dimension.name:
                intent.filters[dimension.name] = value
                used.update(phrase.split())
                break
    if intent.country and intent.group != "country" and entity.table in ("entities", "labels"):
        intent.filters["country"] = intent.country
    if entity.key == "address" and intent.address:
        intent.filters = {"address": intent.address, "chain": intent.address_chain or ""}
        used.update(_ABOUT_AN_ADDRESS & set(text.split()))
        return
    for phrase in entity.flag_off:
        if f" {phrase} " in text:
            intent.flag_off = True
            used.update(phrase.split())
    if entity.table == "labels" and intent.named:
        intent.filters["entity"] = intent.named
        used.update(re.findall(r"[a-z0-9#]+", intent.named.lower()))
        return
    used.update({"active", "seen", "been"} & set(text.split()))
    if best is not None:
        intent.measure = best[1]
        used.update(best[2].split())
    if intent.named:
        used.update(re.findall(r"[a-z0-9#]+", intent.named.lower()))
        if not (intent.measure or intent.group):
            intent.filters = {"name": intent.named}

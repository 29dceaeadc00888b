"""Intents over the asker's own credit ledger (``credit_entries``).

What is asked: the balance or lifetime totals (a state: the latest entry's
column), credits spent (per action: queries, chat, address analyses),
credits granted, or the number of entries; filters and groupings by
action and entry type come from the semantic model's synonyms.
"""

from __future__ import annotations

from typing import Protocol

from chat import semantic
from chat.lexicon import GROUP_LEADS


class CreditIntent(Protocol):
    """The parts of ``chat.intent.Intent`` read and set here."""

    measure: str | None
    filters: dict[str, str]
    group: str | None
    unused: list[str]


COUNT = ("how many", "number of", "count")
BALANCE = ("balance", "left", "remaining", "do i have", "have i got", "have i")


def read_credits(text: str, intent: CreditIntent, used: set[str]) -> None:
    entity = semantic.CREDITS

    def has(*phrases: str) -> bool:
        return any(f" {phrase} " in text for phrase in phrases)

    for dimension in entity.dimensions:
        for phrase in dimension.words:
            if any(f" {lead} {phrase} " in text for lead in GROUP_LEADS):
                intent.group = dimension.name
                used.update(phrase.split())
        for phrase, value in sorted(dimension.synonyms, key=lambda pair: -len(pair[0])):
            if has(phrase) and intent.group != dimension.name:
                intent.filters[dimension.name] = value
                used.update(phrase.split())
                break
    spent, granted = entity.measure("spent"), entity.measure("granted")
    assert spent is not None and granted is not None
    if has("lifetime"):
        intent.measure = "lifetime_spent"
        used.add("lifetime")
    elif has(*spent.words):
        intent.measure = "spent"
    elif has(*granted.words):
        intent.measure = "granted"
    elif has(*BALANCE):
        intent.measure = "balance"
    elif intent.filters.get("type") == "grant" and has("how many credits", "how much"):
        intent.measure = "granted"
    elif has(*COUNT) and not has("how many credits", "how much"):
        intent.measure = "entries"
    used.update(w for phrase in (*spent.words, *granted.words, *BALANCE, *COUNT) if has(phrase) for w in phrase.split())
    measure = entity.measure(intent.measure or "")
    if measure is not None and measure.snapshot:
        # A balance is not "per action": a filter it cannot take is reported.
        intent.unused += [f"{name} {value}" for name, value in intent.filters.items()]
        intent.filters.clear()
        intent.group = None

"""Intents over the asker's own query history (``query_history``).

What is asked: how many queries (per status, or per error code: "what
errors did my queries get"), their durations (average, longest, shortest),
the rows they returned, or the queries themselves (latest, slowest,
fastest). Status filters come from the semantic model's synonyms ("timed
out" is ``timeout``).
"""

from __future__ import annotations

from typing import Protocol

from chat import semantic
from chat.lexicon import GROUP_LEADS

# "what errors did my queries get": a question about errors groups by them.
ASK_LEADS = ("what", "which")


class QueryIntent(Protocol):
    """The parts of ``chat.intent.Intent`` read and set here."""

    measure: str | None
    filters: dict[str, str]
    group: str | None


def read_queries(text: str, intent: QueryIntent, used: set[str], best: tuple[int, str, str] | None) -> None:
    entity = semantic.QUERIES
    for dimension in entity.dimensions:
        leads = (*GROUP_LEADS, *ASK_LEADS) if dimension.present else GROUP_LEADS
        for phrase in dimension.words:
            if any(f" {lead} {phrase} " in text for lead in leads):
                intent.group = dimension.name
                used.update(phrase.split())
        for phrase, value in sorted(dimension.synonyms, key=lambda pair: -len(pair[0])):
            if f" {phrase} " in text and intent.group != dimension.name:
                intent.filters[dimension.name] = value
                used.update(phrase.split())
                break
    if best is not None and not (intent.group and best[1] == "queries"):
        intent.measure = best[1]
        used.update(best[2].split())

"""The one interface every translator implements: a question (with the
conversation's earlier turns and the client's context) in, a Translation out.

A translation is one of:

- ``sql``: a parameterised SELECT over the query engine's public names, run
  by ``queryengine.services.run_query`` as the asker (same validator, tenant
  guard and limits as their own SQL);
- ``analysis``: a risk question answered by the compliance analysis service
  instead of SQL;
- ``clarify``: a question back to the asker, when the translator is not
  confident enough to guess (no SQL runs);
- ``refuse``: a request the chat never carries out (a change, another
  user's data, a question outside the data), with its code from
  ``chat.refusals`` (no SQL runs, and none is offered in its place).

Translators never run anything themselves and never see other tenants'
rows: what they produce goes through the same checks as user SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Kind = Literal["sql", "analysis", "clarify", "refuse"]


class TranslatorUnavailable(RuntimeError):
    """The translator could not answer for a reason on our side (a model
    server that is down, broke mid-stream or answered garbage): the request
    fails with INTERNAL and its charge is refunded."""


@dataclass(frozen=True)
class ChatContext:
    """What the client says the question is about (``context`` of ``chat``)."""

    symbol: str | None = None
    chain: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class Turn:
    """An earlier exchange of the conversation, oldest first."""

    question: str
    slots: dict[str, Any] | None = None
    sql: str = ""


@dataclass
class Translation:
    kind: Kind
    # What the answer's first sentence says the rows are ("BTC-USD trades on
    # binance in the last hour"); for clarify, the question to ask back.
    text: str
    sql: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    # What the question was understood as: kept with the message so that a
    # follow-up ("and on bitcoin?") fills what it leaves out.
    slots: dict[str, Any] = field(default_factory=dict)
    # Tokens the translator consumed (a model server's usage report); 0 for
    # translators that do not use a model.
    tokens: int = 0
    # For kind "analysis".
    chain: str = ""
    address: str = ""
    # How to word the answer: "value" (one number), "rows" (a table), "labels" ...
    shape: str = "rows"
    unit: str = ""
    # For kind "refuse": REFUSED_CHANGE, REFUSED_OTHERS or REFUSED_OUTSIDE.
    code: str = ""


ProgressCallback = Callable[[str], None]


class Translator(Protocol):
    name: str

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
        """Translate one question. ``now_ms`` is the moment relative time
        ranges ("last hour") are measured from. ``on_delta`` receives text a
        model streams while it works (translators without one never call it)."""
        ...

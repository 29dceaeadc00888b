"""The built-in translator: questions parsed into intents over the semantic
model (``chat.semantic``, ``chat.intent``) and compiled through sqlglot
(``chat.sqlcompile``).

Order of work: refusals first (``chat.refusals``: no substitute query);
then the intent; a follow-up ("and for ETH?", "now by hour", "only
binance", "what about yesterday") fills what it leaves out from the
previous turn's intent; the client's context fills the symbol. What cannot
be used leads to a clarifying question with the candidates (an asset with
several markets, an unknown venue, a resolution that is not stored, an
ambiguous measure) or is named in the answer ("I could not use: …").

Risk questions go to the compliance analysis (an ``analysis`` answer, no
SQL). A question that names no table of the model, and is no follow-up,
gets a clarifying answer listing what can be asked; nothing runs.
"""

from __future__ import annotations

import re
from dataclasses import fields

from chat import bounds, semantic
from chat.chainwords import asks_risk, find_address
from chat.intent import FOLLOW_UP, Intent, Parser
from chat.intent_transfers import follow_transfers, resolve_transfers
from chat.lexicon import BASES
from chat.refusals import refusal
from chat.sqlcompile import compile_intent
from chat.translators.base import ChatContext, ProgressCallback, Translation, Turn
from chat.vocabulary import Vocabulary, load_vocabulary
from compliance.interface import BITCOIN, ETHEREUM, InvalidAddress, normalize_chain_address
from queryengine.interface import catalog

_INTENT_FIELDS = {f.name for f in fields(Intent)}


def _previous(history: list[Turn]) -> Intent | None:
    for turn in reversed(history):
        if turn.slots:
            if turn.slots.get("engine") != "semantic":
                return None
            return Intent(**{k: v for k, v in turn.slots.items() if k in _INTENT_FIELDS})
    return None


def merge(previous: Intent, new: Intent) -> Intent:
    """The previous intent with what the follow-up names replacing its parts."""
    merged = Intent(
        table=previous.table,
        measure=new.measure or (None if new.order or new.limit else previous.measure),
        filters={**previous.filters},
        window=new.window or previous.window,
        bucket=new.bucket or previous.bucket,
        group=new.group or previous.group,
        order=new.order or (None if new.measure else previous.order),
        limit=new.limit or (None if new.measure else previous.limit),
        unused=list(new.unused),
        party=new.party or previous.party,
        bounds=new.bounds or previous.bounds,
        corrections=list(new.corrections),
        ambiguous=new.ambiguous,
        follow_up=True,
    )
    if previous.table == "transfers":
        follow_transfers(previous, new, merged)
    elif new.base:
        merged.filters.pop("symbol", None)
        merged.base = new.base
    merged.filters.update(new.filters)
    if merged.group in merged.filters and merged.group in new.filters:
        merged.group = None
    return merged


class SemanticTranslator:
    name = "builtin"

    def __init__(self, vocabulary: Vocabulary | None = None) -> None:
        self._vocabulary = vocabulary

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            self._vocabulary = load_vocabulary()
        return self._vocabulary

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
        risk = _risk(question, history, context)
        if risk is not None:
            return risk
        previous = _previous(history)
        parser = Parser(self.vocabulary)
        intent = parser.parse(question, now_ms)
        follows = semantic.MODEL.get(previous.table or "") if previous is not None else None
        if intent.table is None and follows is not None and follows.follows:
            # Read with the words of the turn before's table ("only USDT", "and received?").
            hinted = parser.parse(question, now_ms, follows.table)
            intent = hinted if _carries(hinted) else intent
        if intent.table is None and not _carries(intent):
            # Nothing of the model in it ("hello", "thanks"): not a follow-up either.
            return Translation("clarify", UNSURE)  # no slots: a later turn follows the one before
        if previous is not None and (intent.table is None or (intent.follow_up and intent.table == previous.table)):
            intent = merge(previous, intent)
        if intent.table is None and "symbol" in intent.filters:
            intent.table = "trades"
        if intent.table is None and context.address and not intent.follow_up:
            intent.table = "labels"  # "any labels?" about the address in the context
        if intent.table == "labels" and "address" not in intent.filters and context.address:
            _context_address(intent, context)
        if intent.table == "transfers" and intent.party and intent.party not in intent.filters:
            _context_party(intent, context)
        if intent.table is None:
            return Translation("clarify", UNSURE)
        return self._compile(intent, context, question)

    def _compile(self, intent: Intent, context: ChatContext, question: str) -> Translation:
        entity = semantic.MODEL[intent.table or ""]
        if intent.bounds and not entity.size_column:
            intent.unused += bounds.unused(intent.bounds)  # nothing here to compare with a number
            intent.bounds = []
        if intent.other_address:
            intent.unused.append(intent.other_address)
        if intent.bounds and entity.table == "trades":
            units = {s.split("-")[0].lower() for s in self.vocabulary.symbols} | set(BASES)
            which = bounds.price_or_size(intent.bounds, question.lower(), units)
            if which:
                return Translation("clarify", which, slots=intent.slots())
        slots = intent.slots()
        problem = self._resolve(entity, intent, context, question)
        if problem:
            return Translation("clarify", problem, slots=intent.slots())
        if intent.ambiguous:
            return Translation("clarify", intent.ambiguous, slots=slots)
        _unusable(entity, intent)
        compiled = compile_intent(entity, intent)
        text = compiled.description
        if intent.corrections:
            text += f" (read {', '.join(intent.corrections)})"
        if intent.unused:
            text += f" (I could not use: {', '.join(dict.fromkeys(intent.unused))})"
        return Translation(
            "sql",
            text,
            sql=compiled.sql,
            params=compiled.params,
            slots=intent.slots(),
            shape=compiled.shape,
            unit=compiled.unit,
        )

    def _resolve(self, entity: semantic.Entity, intent: Intent, context: ChatContext, question: str) -> str:
        if entity.table not in ("trades", "candles"):
            return resolve_transfers(intent) if entity.table == "transfers" else ""
        symbols = self.vocabulary.symbols
        if "symbol" not in intent.filters and intent.base:
            matches = [s for s in symbols if s.upper().split("-")[0] == intent.base]
            if len(matches) == 1:
                intent.filters["symbol"] = matches[0]
            elif matches:
                return f"{intent.base} trades on several markets: {', '.join(matches)}. Which one do you mean?"
            else:
                return f"There is no {intent.base} market here. Markets: {', '.join(symbols[:20])}."
        if "symbol" not in intent.filters and context.symbol and intent.group != "symbol":
            intent.filters["symbol"] = context.symbol
        if entity.table == "candles":
            intent.bucket = intent.bucket or "1m"
            stored = entity.stored["resolution"]
            if intent.bucket not in stored:
                resolution, intent.bucket = intent.bucket, None
                return (
                    f"The candles table stores {', '.join(stored)} candles; {resolution} candles are served by "
                    "request_market_data. Which stored resolution should I use?"
                )
            intent.filters["resolution"] = intent.bucket
            if "symbol" not in intent.filters:
                return f"Candles of which market? Markets: {', '.join(symbols[:20])}."
        if (
            entity.table == "trades"
            and "symbol" not in intent.filters
            and intent.group != "symbol"
            and intent.measure is None
            and not intent.order
        ):
            return f"Trades of which market? Markets: {', '.join(symbols[:20])}."
        if "symbol" not in intent.filters and intent.group != "symbol" and intent.unused:
            unknown = ", ".join(intent.unused)
            return f"Which market do you mean? I do not know: {unknown}. Markets: {', '.join(symbols[:20])}."
        for word in list(intent.unused):
            if word in self.vocabulary.venues:
                continue
            named = (
                rf"\b(?:on|at|from|via|venue|exchange)\s+{re.escape(word)}\b|\b{re.escape(word)}\s+(?:trades|candles)"
            )
            if re.search(named, question.lower()):
                return (
                    f"I do not know {word!r} here. Venues: {', '.join(self.vocabulary.venues)}; "
                    f"markets: {', '.join(symbols[:20])}. Which did you mean?"
                )
        return ""


UNSURE = (
    "I am not sure what you are asking. I can answer questions about trades and candles (e.g. "
    '"BTC-USD 1m candles for the last hour"), on-chain transfers ("top 10 ethereum addresses by '
    'outgoing volume last week"), labels and entities ("which addresses are sanctioned?"), address '
    'risk ("what is the risk of 0x…?"), your credits ("how many credits did I spend this month?") '
    'and your queries ("how many of my queries failed today?"). Which of these do you mean?'
)


def _unusable(entity: semantic.Entity, intent: Intent) -> None:
    """Filters and groupings on columns the table does not have ("BTC-USD"
    in a question about queries) and an order by size on a table without one
    are named as not used, never compiled into a statement the engine would
    refuse."""
    table = catalog.get(entity.table)
    columns = {column.name for column in table.table.columns} if table is not None else set()
    for name in [n for n in intent.filters if n not in columns and n not in (entity.either[0], entity.pair)]:
        intent.unused.append(intent.filters.pop(name))
    if intent.group is not None and intent.group not in columns:
        intent.unused.append(intent.group)
        intent.group = None
    if intent.order in ("largest", "smallest") and not entity.size_column:
        intent.unused.append(intent.order)
        intent.order = None


def _carries(intent: Intent) -> bool:
    """Whether the question named anything of the model (a table, a measure,
    a filter, a time, a grouping, an order or a limit)."""
    named = (intent.measure, intent.window, intent.bucket, intent.group, intent.order, intent.limit, intent.base)
    return any((*named, intent.filters, intent.bounds, intent.address, intent.party, intent.other_address))


def _context_party(intent: Intent, context: ChatContext) -> None:
    """The client's address fills "it" in a question about transfers ("how many did it send?")."""
    if not context.address:
        return
    chain = context.chain or (ETHEREUM if (context.address or "").lower().startswith("0x") else BITCOIN)
    try:
        address = normalize_chain_address(chain, context.address or "")
    except (InvalidAddress, ValueError):
        return
    intent.filters[intent.party or "address"] = address
    intent.filters.setdefault("chain", chain)


def _context_address(intent: Intent, context: ChatContext) -> None:
    """The client's address fills a question about one address that names none."""
    if intent.measure or intent.group or any(k in intent.filters for k in ("category", "entity", "country", "source")):
        return
    chain = context.chain or (ETHEREUM if (context.address or "").lower().startswith("0x") else BITCOIN)
    try:
        intent.filters = {"address": normalize_chain_address(chain, context.address or ""), "chain": chain}
    except (InvalidAddress, ValueError):
        return


# Words of other questions: "risky" in them does not ask to assess an address.
_NOT_RISK = re.compile(
    r"\b(?:label|sanction|transfer|entit|trade|candle|credit|quer|categor|how\s+many)", re.IGNORECASE
)


def _risk(question: str, history: list[Turn], context: ChatContext) -> Translation | None:
    """A risk question ("how risky is 0x…?", "risk score?" with an address in
    the context, "and 0x…?" after one) is answered by the compliance analysis,
    not SQL; without an address it asks for one."""
    found = find_address(question)
    last = next((turn.slots for turn in reversed(history) if turn.slots), None) or {}
    again = last.get("intent") == "risk" and found.address is not None and FOLLOW_UP.match(question.lower())
    if not (asks_risk(question) or again):
        return None
    address, chain = found.address, found.chain
    if address is None and found.invalid:
        return Translation("clarify", f"{found.invalid}. Which address did you mean?")
    if address is None and context.address:
        chain = context.chain or (ETHEREUM if context.address.lower().startswith("0x") else BITCOIN)
        try:
            address = normalize_chain_address(chain, context.address)
        except (InvalidAddress, ValueError):
            address = None
    if address is None:
        if _NOT_RISK.search(question):
            return None
        return Translation("clarify", "Which address should I assess? Give its chain and address.")
    chain = chain or ETHEREUM
    slots = {"engine": "semantic", "intent": "risk", "address": address, "chain": chain}
    return Translation(
        "analysis", f"the risk of {address} on {chain}", slots=slots, chain=chain, address=address, shape="analysis"
    )

"""Questions the chat refuses outright, each with a documented code.

Checked before any translation, so a refusal never comes with a substitute
query (a harmless SELECT in place of "give me 100 credits" would read as if
the request had been carried out):

- ``REFUSED_CHANGE``: a request to change anything: DML or DDL ("delete
  from", "drop table"), imperative changes ("give me 100 credits", "reset
  my balance", "label this address as a mixer"). The chat only reads.
- ``REFUSED_OTHERS``: another user's or another tenant's data ("other
  users' balances", "alice's queries", "all customers"): a caller reads only
  their own rows of private tables.
- ``REFUSED_OUTSIDE``: questions outside the data (weather, news, advice,
  forecasts): the answer would not come from the data here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHANGE = "REFUSED_CHANGE"
OTHERS = "REFUSED_OTHERS"
OUTSIDE = "REFUSED_OUTSIDE"
CODES = (CHANGE, OTHERS, OUTSIDE)

_POLITE = (
    r"^\s*(?:(?:hey|hi|ok|okay|so|now|please|pls|plz|kindly|just|then|and)[\s,]+)*"
    r"(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?|i\s+(?:want|need|would\s+like|'d\s+like)\s+"
    r"(?:you\s+)?to\s+|i\s+wanna\s+|let'?s\s+|go\s+(?:ahead\s+and\s+)?|you\s+(?:must|should)\s+)?"
    r"(?:please\s+)?"
)
# Verbs that only ever ask for a change, and verbs that do when an object
# follows ("add 5 credits", "mark this address"), not in "transfer volume".
_STRONG_VERBS = (
    "delete|remove|drop|insert|update|truncate|alter|create|grant|reset|wipe|erase|purge|refund|unlabel|delist|"
    "relist|blacklist|whitelist|ban|unban|rename|overwrite|restore|execute|exec|top\\s+up|topup|deposit"
)
_WEAK_VERBS = (
    "add|set|change|modify|edit|clear|credit|debit|transfer|send|move|mark|label|tag|flag|cancel|kill|replace|"
    "increase|decrease|raise|lower|double|zero|fix|correct|write|save|store|upload|import|assign|approve"
)
_OBJECT = r"\s+(?:(?:me|us|my|our|the|this|that|these|those|it|all|a|an|some|more|every)\b|\d|0x)"
CHANGE_IMPERATIVE = re.compile(
    _POLITE + rf"(?:(?:{_STRONG_VERBS})\b(?!\s+(?:many|much|count|volume|of)\b)|(?:{_WEAK_VERBS}){_OBJECT})",
    re.IGNORECASE,
)
CHANGE_SQL = re.compile(
    r"\b(?:delete\s+from|insert\s+into|update\s+\w+\s+set|drop\s+(?:table|database|schema|index|view|user|role)"
    r"|truncate\s+(?:table\s+)?\w+|alter\s+(?:table|user|role|database)|create\s+(?:table|index|view|user|role)"
    r"|grant\s+\w+\s+on|revoke\s+\w+|vacuum|copy\s+\w+\s+(?:from|to))\b",
    re.IGNORECASE,
)
CHANGE_PHRASE = re.compile(
    r"\b(?:give|grant|add|send|credit|transfer|gift|award)\s+(?:me|us|my\s+account|him|her|them)?\s*"
    r"(?:\d[\d,.]*|some|more|free|extra|unlimited)\s+(?:free\s+)?credits?\b"
    r"|\b(?:reset|clear|zero|wipe|restore|refill|top\s+up|increase|raise|set)\s+(?:out\s+)?(?:my|the|our)\s+"
    r"(?:credit\s+)?(?:balance|credits?|ledger|account|history|quota|limit)s?\b"
    r"|\b(?:make|let)\s+(?:my\s+)?(?:balance|credits?)\s+(?:be\s+)?\d"
    r"|\b(?:(?:delete|remove|erase|clear|wipe|forget)\s+(?:all\s+)?(?:of\s+)?(?:my|the|this|these|those|that)\b)"
    r"|\b(?:free\s+credits|unlimited\s+credits)\b",
    re.IGNORECASE,
)
OTHER_PEOPLE = re.compile(
    r"\b(?:other|another|all|every|each|any|different|some)\s+(?:of\s+the\s+)?"
    r"(?:users?|tenants?|customers?|clients?|accounts?|applications?|apps?|people|members?|organi[sz]ations?|teams?)\b"
    r"|\b(?:everyone|everybody|someone|somebody|anyone|anybody)(?:'s|\s+else'?s?)\b"
    r"|\b(?:users?|tenants?|customers?|clients?)\s+(?:id\s+)?[#@]?\w*\d\w*\b"
    r"|\b(?:user|tenant|customer|client)\s+(?:named\s+|called\s+)?[\"']?[a-z][\w.-]*[\"']?(?:'s)?\s+"
    r"(?:credits?|balance|queries|query|spend|spending|history|ledger|account|conversations?|chats?)\b"
    r"|\b(?!(?:it|that|this|what|who|where|there|here|let|one|address|wallet|today|yesterday)'s)[a-z]+'s\s+(?:credits?|balance|queries|query|spend|spending|"
    r"ledger|account|conversations?|chats?|query\s+history)\b"
    r"|\b(?:his|her|their)\s+(?:credits?|balance|queries|spend|spending|ledger|conversations?|chats?)\b"
    r"|\bhow\s+many\s+(?:users|tenants|customers|clients|accounts|people)\b"
    r"|\b(?:list|show|which|who\s+are\s+the|all)\s+(?:the\s+)?(?:users|tenants|customers|clients)\b"
    r"|\b(?:admin|administrator|superuser|root)\b"
    r"|\b(?:of|for|from|by)\s+(?:the\s+)?(?:users?|tenants?|customers?|clients?)\b",
    re.IGNORECASE,
)
OUTSIDE_DATA = re.compile(
    r"\b(?:weather|temperature|forecast|predict(?:ion|ed|s)?|will\s+(?:the\s+)?(?:price|btc|eth|bitcoin|ethereum)"
    r"|should\s+i\s+(?:buy|sell|invest|hold)|investment\s+advice|financial\s+advice|news|headlines|joke|poem|"
    r"song|recipe|president|prime\s+minister|capital\s+of|stock\s+price|stocks?|shares\s+of|nasdaq|s&p|"
    r"translate|who\s+are\s+you|your\s+name|meaning\s+of\s+life|tomorrow|next\s+(?:week|month|year|hour|day)|"
    r"in\s+\d+\s+(?:days|weeks|months|years)|sports?|football|election|movie|lottery)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Refusal:
    code: str
    text: str


def refusal(question: str) -> Refusal | None:
    """The refusal this question gets, or None when it may be translated."""
    text = " ".join(question.replace("\u2019", "'").split())
    if CHANGE_SQL.search(text) or CHANGE_PHRASE.search(text) or CHANGE_IMPERATIVE.search(text):
        return Refusal(
            CHANGE,
            f"I cannot do that ({CHANGE}): the chat only reads data, it never changes anything "
            "(no credits, balances, labels or rows are created, changed or deleted). Nothing was run.",
        )
    if OTHER_PEOPLE.search(text):
        return Refusal(
            OTHERS,
            f"I cannot answer that ({OTHERS}): you can only see your own credits, queries and conversations, "
            "never another user's or another tenant's. Nothing was run.",
        )
    if OUTSIDE_DATA.search(text):
        return Refusal(
            OUTSIDE,
            f"I cannot answer that ({OUTSIDE}): it is outside the data here (market trades and candles, "
            "on-chain transfers, labels and entities, and your own credits and queries). Nothing was run.",
        )
    return None

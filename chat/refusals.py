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
# What is private to each user: their credits, queries and conversations.
_PRIVATE = (
    r"(?:credits?|balance|queries|query|quer(?:y|ies)\s+history|spend|spending|spent|ledger|account|usage|bill|"
    r"invoices?|conversations?|chats?|history|grants?|deductions?)"
)
# Words that are not someone else: the asker, pronouns of things, data nouns.
_NOT_A_PERSON = (
    r"(?:i|me|my|we|us|our|you|your|it|its|this|that|these|those|there|here|the|a|an|each|every|any|all|some|one|"
    r"queries|query|chat|chats|analyses|analysis|address|addresses|wallet|trades?|candles?|transfers?|labels?|"
    r"entit(?:y|ies)|market|markets|exchange|venue|binance|coinbase|kraken|ethereum|bitcoin|eth|btc|usdt|usdc|"
    r"today|yesterday|week|month|year|hour|day|time|credits?|balance|nobody|none|what|which|who|how|much|many)"
)
OTHER_PEOPLE = re.compile(
    r"\b(?:other|another|all|every|each|any|different|some)\s+(?:of\s+the\s+)?"
    r"(?:users?|tenants?|customers?|clients?|accounts?|applications?|apps?|people|members?|organi[sz]ations?|teams?)\b"
    r"|\b(?:everyone|everybody|someone|somebody|anyone|anybody)(?:'s|\s+else'?s?)\b"
    r"|\b(?:users?|tenants?|customers?|clients?|members?|accounts?|orgs?|organi[sz]ations?)\s+(?:id\s+|no\.?\s+|number\s+)?"
    r"[#@]?\w*\d\w*\b"
    r"|\b(?:user|tenant|customer|client|member|person|account|org|organi[sz]ation|team|application|app|company)\s+"
    r"(?:named|called|with\s+(?:the\s+)?(?:name|id|email))\b"
    r"|\b(?:user|tenant|customer|client)\s+[\"']?[a-z][\w.-]*[\"']?(?:'s)?\s+" + _PRIVATE + r"\b"
    r"|\b(?!(?:it|that|this|what|who|where|there|here|let|one|address|wallet|today|yesterday)'s)[a-z]+'s\s+"
    r"(?:(?:total|credit|remaining|current|recent|latest|last)\s+)?" + _PRIVATE + r"\b"
    r"|\b(?:his|her|their|hers|theirs)\s+(?:\w+\s+)?" + _PRIVATE + r"\b"
    # "my colleague's queries", "what did my boss spend": someone else all the same.
    r"|\b(?:my|our)\s+(?:colleague|coworker|co-worker|boss|manager|friend|team\s*mate|teammate|partner|wife|"
    r"husband|brother|sister|client|customer)s?\b"
    r"|\bhow\s+many\s+(?:users|tenants|customers|clients|accounts|people|members)\b"
    r"|\b(?:list|show|which|who\s+are\s+the|all)\s+(?:the\s+)?(?:users|tenants|customers|clients|members)\b"
    r"|\b(?:admin|administrator|superuser|root)\b"
    r"|\b(?:of|for|from|by)\s+(?:the\s+)?(?:users?|tenants?|customers?|clients?)\b"
    # An e-mail address names a person; the data here has none.
    r"|\b[\w.+-]+@[\w-]+\.[\w.]+\b",
    re.IGNORECASE,
)
# Someone named as the subject of a private-data question: "how many credits
# does alice have", "what did bob spend", "how many queries has carol run".
OTHER_SUBJECT = re.compile(
    r"\b(?:does|did|has|had|is|was|do|have)\s+(?!" + _NOT_A_PERSON + r"\b)([a-z][\w.-]*)\s+"
    r"(?:(?:still|already|currently|ever|really)\s+)?"
    r"(?:have|has|hold|own|got|get|left|remaining|spend|spent|use|used|run|ran|send|sent|ask|asked|pay|paid|"
    r"consume|consumed|receive|received|query|queried|burn|burned|burnt)\b"
    # "the queries that kevin ran", "credits mike has left"
    r"|\b" + _PRIVATE + r"\s+(?:that|which)?\s*(?!" + _NOT_A_PERSON + r"\b)([a-z][\w.-]*)\s+"
    r"(?:has|had|have|ran|runs|run|spent|spends|used|uses|made|makes|sent|asked|got|owns|holds|paid)\b",
    re.IGNORECASE,
)
# Someone named as the owner of private data: "credits of alice", "the
# balance for carol", "queries run by dave", "tenant acme ... credits".
OTHER_OWNER = re.compile(
    r"\b" + _PRIVATE + r"\s+(?:of|for|belonging\s+to|owned\s+by|(?:run|made|sent|spent|used|asked)\s+by)\s+"
    r"(?!" + _NOT_A_PERSON + r"\b|(?:app|application|tenant)[_:-])([a-z][\w.-]*)\b"
    r"|\b(?:user|tenant|customer|client|member|org|organi[sz]ation|company|team)\s+(?!" + _NOT_A_PERSON + r"\b)"
    r"[\"']?[a-z][\w.@-]*",
    re.IGNORECASE,
)
OUTSIDE_DATA = re.compile(
    r"\b(?:weather|temperature|forecast|predict(?:ion|ed|s)?|will\s+(?:the\s+)?(?:price|btc|eth|bitcoin|ethereum)"
    r"|should\s+i\s+(?:buy|sell|invest|hold|short)|investment\s+advice|financial\s+advice|news|headlines|joke|poem|"
    r"song|recipe|president|prime\s+minister|capital\s+of|stock\s+price|stocks?|shares\s+of|nasdaq|s&p|"
    r"translate|who\s+are\s+you|your\s+name|meaning\s+of\s+life|tomorrow|next\s+(?:week|month|year|hour|day)|"
    r"in\s+\d+\s+(?:days|weeks|months|years)|sports?|football|soccer|election|movie|film|lottery|horoscope|"
    r"gold|silver|crude\s+oil|forex|dating|girlfriend|boyfriend|homework|tax\s+return)\b",
    re.IGNORECASE,
)
# Requests for writing rather than for data ("write me a poem", "draft an email").
OUTSIDE_WRITING = re.compile(
    r"\b(?:write|compose|draft|generate|create|make|sing|tell|give)\s+(?:me\s+|us\s+)?(?:a|an|some|another|one)?\s*"
    r"(?:\w+\s+)?(?:poems?|haikus?|limericks?|stor(?:y|ies)|songs?|essays?|e-?mails?|letters?|jokes?|riddles?|"
    r"tweets?|speech|rap|novel|lyrics|blog\s+post|cover\s+letter|python\s+script|script|program|function|"
    r"fun\s+fact|quote|pun|bedtime|messages?|notes?|memo|paragraph|articles?|blog|reply|cover\s+letter)\b",
    re.IGNORECASE,
)
# Open questions about the world, when no word of the data is in them.
OUTSIDE_OPEN = re.compile(
    r"^\s*(?:(?:hey|hi|so|ok|okay|please)[\s,]+)*(?:who\s+(?:won|invented|wrote|founded)|"
    r"when\s+(?:is|was|did|does|will)|why\s+(?:is|was|do|does|did)|"
    r"how\s+(?:do|can|should)\s+i|how\s+to|explain|define|what\s+does\s+\w+\s+mean|recommend|suggest|"
    r"summari[sz]e|tell\s+me\s+about|where\s+(?:can|should|do)\s+i|"
    r"(?:what|which)(?:'s|s|\s+is|\s+are)?\s+(?:a|an|the|some)\s+(?:good|best|nice|cheap|great|meaning|difference|capital))\b"
    r"|\bnear\s+me\b",
    re.IGNORECASE,
)
# Words of the data: a question that has one is not an open question.
DATA_WORDS = re.compile(
    r"\b(?:trades?|trading|traded|candles?|ohlcv?|bars|klines?|volume|vwap|price|prices|notional|buys?|sells?|"
    r"venues?|exchanges?|binance|coinbase|kraken|markets?|pairs?|symbols?|transfers?|sent|received|senders?|"
    r"receivers?|addresse?s?|wallets?|labels?|labelled|labeled|entit(?:y|ies)|sanction\w*|mixers?|risk|"
    r"chains?|ethereum|bitcoin|eth|btc|usdt|usdc|credits?|balance|ledger|spent|spend|spending|quer(?:y|ies)|"
    r"conversations?|resolution|1m|5m|1h|ts|rows?|tables?|columns?|schema)\b|\b0x[0-9a-f]+|\b\w+[-/]\w+\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Refusal:
    code: str
    text: str


_PRIVATE_WORD = re.compile(r"\b" + _PRIVATE + r"\b", re.IGNORECASE)
# An application id ("app_acme"): another tenant unless it is the asker's own.
_APPLICATION_ID = re.compile(r"\b(?:app|application|tenant)[_:-][\w-]+\b", re.IGNORECASE)


def other_people(text: str, application_id: str = "") -> bool:
    """Whether the question asks about another user's or tenant's data."""
    if OTHER_PEOPLE.search(text):
        return True
    if any(match.group(0).lower() != application_id.lower() for match in _APPLICATION_ID.finditer(text)):
        return True
    if not _PRIVATE_WORD.search(text):
        return False
    return bool(OTHER_SUBJECT.search(text) or OTHER_OWNER.search(text))


def outside_data(text: str) -> bool:
    """Whether the question asks for something the data here cannot answer."""
    if OUTSIDE_DATA.search(text):
        return True
    return bool(OUTSIDE_OPEN.search(text)) and not DATA_WORDS.search(text)


_OUTSIDE_TEXT = (
    f"I cannot answer that ({OUTSIDE}): it is outside the data here (market trades and candles, "
    "on-chain transfers, labels and entities, and your own credits and queries). Nothing was run."
)


def by_code(code: str) -> Refusal | None:
    """The documented refusal of a code (a model's ``{"refuse": CODE}``), or None."""
    texts = {
        CHANGE: f"I cannot do that ({CHANGE}): the chat only reads data, it never changes anything "
        "(no credits, balances, labels or rows are created, changed or deleted). Nothing was run.",
        OTHERS: f"I cannot answer that ({OTHERS}): you can only see your own credits, queries and conversations, "
        "never another user's or another tenant's. Nothing was run.",
        OUTSIDE: _OUTSIDE_TEXT,
    }
    return Refusal(code, texts[code]) if code in texts else None


def refusal(question: str, application_id: str = "") -> Refusal | None:
    """The refusal this question gets, or None when it may be translated."""
    text = " ".join(question.replace("\u2019", "'").split())
    change = CHANGE_SQL.search(text) or CHANGE_PHRASE.search(text)
    if change is None and not OUTSIDE_WRITING.search(text):
        change = CHANGE_IMPERATIVE.search(text)
    if change:
        return by_code(CHANGE)
    if OUTSIDE_WRITING.search(text):
        return by_code(OUTSIDE)
    if other_people(text, application_id):
        return by_code(OTHERS)
    if outside_data(text):
        return by_code(OUTSIDE)
    return None

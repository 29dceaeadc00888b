"""Intents over transfers: which chain and asset, whose transfers (an
address as sender, receiver or either, or the asker's context address for
"it"), rankings of addresses ("top senders", "who did 0x… send the most
ETH to?") and amounts, which add up only within one asset.

"ETH", "ether" and "BTC" name the asset, except before "chain" or
"network" or after "on", where they name the chain ("eth chain
transfers", "transfers on btc").
"""

from __future__ import annotations

import re
from typing import Protocol

from chat import semantic
from chat.chainwords import CHAIN_WORDS
from compliance.interface import BITCOIN, ETHEREUM

NATIVE = {ETHEREUM: "ETH", BITCOIN: "BTC"}
COINS = {"eth": "ETH", "ether": "ETH", "btc": "BTC", "tether": "USDT"}
_CHAIN_AFTER = ("chain", "network", "blockchain", "mainnet")
_OUT = re.compile(r" (?:sent|send|sends|sending|outgoing|outflows?|withdrawals?|withdrew|paid|senders?|spent|spend) ")
_IN = re.compile(r" (?:received|receive|receives|receiving|incoming|inflows?|deposits?|receivers?|recipients?|got) ")
DIRECTION_WORDS = frozenset(
    [
        *("sent", "send", "sends", "sending", "outgoing", "outflow", "outflows", "withdrawal", "withdrawals"),
        *("withdrew", "paid", "spent", "received", "receive", "receives", "receiving", "incoming", "inflow"),
        *("inflows", "deposit", "deposits", "got", "transferred", "moved", "move", "spend"),
    ]
)
_PARTIES = re.compile(r" (?:address|addresses|wallets?|senders?|receivers?|recipients?|who|whom|counterpart\w*) ")
_COUNTER = re.compile(r" (?:who|whom|counterpart\w*) ")
_ON_CHAIN = re.compile(r" on (?:the )?(?:ethereum|bitcoin|eth|btc) (?:chain |network |blockchain )?")
_HOW_MANY = re.compile(r" (?:how many|number of|count of|count) ")
_RANKING = re.compile(r" (?:most|top|largest|biggest|highest|which|who) ")
_PRONOUNS = re.compile(r" (?:it|its|(?:this|that|the|my) (?:address|wallet)) ")
_AMOUNT = re.compile(r" (?:volume|how much|amount|transferred|moved) ")
_LISTING = re.compile(r" (?:show|list|latest|last|recent|largest|biggest|transfers|transactions|txs) ")


class TransferIntent(Protocol):
    """The parts of ``chat.intent.Intent`` read and set here."""

    measure: str | None
    filters: dict[str, str]
    group: str | None
    order: str | None
    address: str | None
    address_chain: str | None
    party: str | None
    follow_up: bool
    other_address: str | None
    base: str | None


def _assets(text: str, assets: frozenset[str]) -> tuple[str | None, str | None, set[str]]:
    """The chain and the asset the words name, and the words used for them."""
    chain = asset = None
    used: set[str] = set()
    words = text.split()
    for i, word in enumerate(words):
        after = words[i + 1] if i + 1 < len(words) else ""
        before = words[i - 1] if i else ""
        if word in ("ethereum", "bitcoin", "erc20") or (word in COINS and (after in _CHAIN_AFTER or before == "on")):
            chain = CHAIN_WORDS.get(word, ETHEREUM)
            used.update({word, after} if after in _CHAIN_AFTER else {word})
        elif word in COINS or word.upper() in assets:
            asset = COINS.get(word, word.upper())
            used.add(word)
    return chain, asset, used


def asks_transfers(text: str, intent: TransferIntent, assets: frozenset[str]) -> bool:
    """Transfers are named, or what moved between addresses is asked for."""
    if any(f" {noun} " in text for noun in semantic.TRANSFERS.nouns) or " transferred " in text:
        return True
    if "symbol" in intent.filters:
        return False
    _, asset, _ = _assets(text, assets - {"ETH", "BTC"})
    named = intent.address is not None or bool(_PARTIES.search(text))
    moved = bool(_OUT.search(text)) or bool(_IN.search(text)) or " counterparties " in text
    if (moved or _AMOUNT.search(text)) and (named or asset is not None or _ON_CHAIN.search(text)):
        return True
    # "total volume on ethereum": a chain, not a market ("and on bitcoin?" follows the question before it).
    others = (noun for entity in semantic.MODEL.values() for noun in entity.nouns)
    if intent.follow_up or any(f" {noun} " in text for noun in others):
        return False
    return bool(_ON_CHAIN.search(text) and (_AMOUNT.search(text) or _HOW_MANY.search(text)))


def read_transfers(
    text: str, intent: TransferIntent, used: set[str], best: tuple[int, str, str] | None, assets: frozenset[str]
) -> None:
    chain, asset, named = _assets(text, assets)
    used |= named
    if chain:
        intent.filters["chain"] = chain
    if asset:
        intent.filters["asset"] = asset
    for dimension in semantic.TRANSFERS.dimensions:
        for phrase in dimension.words:
            if any(f" {lead} {phrase} " in text for lead in ("per", "by", "each", "every")):
                intent.group = dimension.name
                used.update(phrase.split())
    out = bool(_OUT.search(text))
    incoming = bool(_IN.search(text))
    role = "from_address" if out and not incoming else "to_address" if incoming and not out else "address"
    role, other = _roles(text, role, intent.other_address is not None)
    if other and intent.other_address:
        intent.filters[other] = intent.other_address
        intent.other_address = None  # used
    used |= (DIRECTION_WORDS | {"size", "sizes", "amount", "amounts", "value", "between"}) & set(text.split())
    if best is not None:
        intent.measure = best[1]
        used.update(best[2].split())
    ranking = bool(_RANKING.search(text)) or intent.order == "largest"
    if intent.address is not None:
        intent.filters.setdefault("chain", intent.address_chain or ETHEREUM)
        if _COUNTER.search(text) and intent.group is None:
            # "who did 0x… send the most to?": its counterparties, ranked (those it sent to, unless it received).
            role = "to_address" if role == "to_address" else "from_address"
            intent.group = "from_address" if role == "to_address" else "to_address"
        intent.filters[role] = intent.address
        intent.party = role
    elif _PRONOUNS.search(text):
        intent.party = role  # "how many transfers did it send?": the address in the context
    elif ranking and _PARTIES.search(text) and intent.group is None:
        intent.group = "to_address" if role == "to_address" else "from_address"
    elif intent.follow_up and role != "address":
        intent.party = role  # "and received?": the address of the turn before, in this role
    parties: tuple[str, ...] = (
        "who",
        "whom",
        "most",
        "addresses",
        "address",
        "wallets",
        "wallet",
        "senders",
        "sender",
        "receivers",
    )
    parties = (*parties, "receiver", "recipients", "recipient")
    used.update(w for w in parties if f" {w} " in text)
    used.update(w for w in text.split() if w.startswith("counterpart"))
    if intent.measure is None and intent.group in ("from_address", "to_address"):
        intent.measure = "volume"  # a ranking of addresses: by what they moved
    if intent.measure is None and asset and role != "address" and not _LISTING.search(text):
        intent.measure = "volume"  # "ETH sent by 0x… last week": an amount, not a listing


def _roles(text: str, role: str, two: bool) -> tuple[str, str]:
    """The role of the question's address ("from 0x…", "sent by 0x…", "to
    0x…"), and of a second one ("from 0x… to 0x…"; '' when it has none)."""
    sender = max(text.find(" from address "), text.find(" by address "))
    receiver = text.find(" to address ")
    if two and (" between address and address " in text or (role == "address" and " address and address " in text)):
        return "address", "counterparty"  # either way between the two
    if not two:
        if (sender >= 0) != (receiver >= 0):
            return ("from_address" if sender >= 0 else "to_address"), ""
        return role, ""
    if sender >= 0 and receiver >= 0:
        return ("from_address", "to_address") if sender < receiver else ("to_address", "from_address")
    if receiver >= 0 and role == "from_address":
        return role, "to_address"  # "did 0x… send to 0x…"
    return role, ""


def resolve_transfers(intent: TransferIntent) -> str:
    """A clarifying question when the transfers asked for cannot be chosen
    (no chain and no address for a listing, no asset for a ranking by
    amount), else ''; the native asset of a named chain fills a ranking's asset."""
    chain = intent.filters.get("chain")
    parties = {"address", "from_address", "to_address"} & set(intent.filters)
    if intent.party and not parties:
        return "Transfers of which address? Give its chain and address."
    measure = semantic.TRANSFERS.measure(intent.measure or "")
    ranked = intent.group in ("from_address", "to_address") or (measure is None and intent.order == "largest")
    if ranked and (measure is None or measure.per) and "asset" not in intent.filters:
        if chain is None:
            return "Of which asset, or on which chain: ethereum (ETH, USDT, USDC, …) or bitcoin (BTC)?"
        intent.filters["asset"] = NATIVE.get(chain, "ETH")
    if measure is None and intent.group is None and not (chain or parties or "asset" in intent.filters):
        return "Transfers on which chain: ethereum or bitcoin? Or of which address?"
    return ""


def follow_transfers(previous: TransferIntent, new: TransferIntent, merged: TransferIntent) -> None:
    """A follow-up of a transfers question: filters as ``follow_chain``; a
    direction with no address to give it ("only the incoming ones" after a
    ranking of senders) ranks the other side instead."""
    merged.filters = follow_chain(previous.filters, new.filters, new.base, new.party)
    if {"address", "from_address", "to_address"} & set(merged.filters):
        return
    parties = ("from_address", "to_address")
    if new.party in parties and merged.group in parties and new.group is None:
        merged.group = new.party
    merged.party = None


def follow_chain(previous: dict[str, str], new: dict[str, str], base: str | None, party: str | None) -> dict[str, str]:
    """The filters of a follow-up of a transfers question: a chain named
    ("and on bitcoin?") drops the asset and the address of the other chain;
    a direction ("and received?") gives the address its new role."""
    merged = {**previous}
    roles = [name for name in ("address", "from_address", "to_address") if name in merged]
    if party and party not in new and len(roles) == 1 and roles[0] != party:
        merged[party] = merged.pop(roles[0])
    if base and "chain" not in new:
        new = {**new, "chain": BITCOIN if base == "BTC" else ETHEREUM}
    if new.get("chain", merged.get("chain")) != merged.get("chain"):
        for name in ("asset", "address", "from_address", "to_address"):
            merged.pop(name, None)
    merged.update(new)
    return merged

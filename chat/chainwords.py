"""On-chain words of a question: addresses as written (validated and
normalised per chain by ``compliance``), chains named in words, and the
words that ask for a risk assessment."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from compliance.interface import BITCOIN, ETHEREUM, InvalidAddress, normalize_chain_address

EVM_RE = re.compile(r"\b0x[0-9a-fA-F]{38,42}\b")
BECH32_RE = re.compile(r"\b(?:bc1|BC1)[02-9ac-hj-np-zAC-HJ-NP-Z]{6,87}\b")
BASE58_RE = re.compile(r"\b[13][1-9A-HJ-NP-Za-km-z]{25,34}\b")
ADDRESS_FORMS = ((EVM_RE, ETHEREUM), (BECH32_RE, BITCOIN), (BASE58_RE, BITCOIN))
CHAIN_WORDS = {
    "ethereum": ETHEREUM,
    "eth": ETHEREUM,
    "ether": ETHEREUM,
    "erc20": ETHEREUM,
    "bitcoin": BITCOIN,
    "btc": BITCOIN,
}
RISK_WORDS = (
    "risk",
    "risky",
    "riskscore",
    "risk score",
    "exposure",
    "dangerous",
    "safe",
    "risk level",
    "assess",
    "assessment",
    "screen",
    "screening",
)
RISK_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in RISK_WORDS) + r")\b", re.IGNORECASE)


@dataclass
class FoundAddress:
    address: str | None  # normal form
    chain: str | None
    invalid: str  # "0x12 is not a valid ethereum address: ..." ('' when none)
    text: str  # the question with every address replaced by " ADDRESS "
    more: list[str] = field(default_factory=list)  # the valid addresses after the first, in normal form


def find_address(question: str) -> FoundAddress:
    """The first valid address of the question (and its chain)."""
    found = FoundAddress(None, None, "", question)
    for regex, chain in ADDRESS_FORMS:
        for match in regex.finditer(found.text):
            try:
                normal = normalize_chain_address(chain, match.group(0))
            except InvalidAddress as exc:
                if found.address is None and not found.invalid:
                    found.invalid = f"{match.group(0)} is not a valid {chain} address: {exc}"
                continue
            if found.address is None:
                found.address, found.chain = normal, chain
            elif normal != found.address:
                found.more.append(normal)
        found.text = regex.sub(" ADDRESS ", found.text)
    if found.address is not None:
        found.invalid = ""
    return found


def asks_risk(question: str) -> bool:
    return RISK_RE.search(question) is not None

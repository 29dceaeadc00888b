"""The chains we know (no Django import).

``ethereum`` and ``bitcoin`` are analysed: transactions are imported, graphs
walked, rooms open. The others exist so that sanctions lists naming their
addresses can be stored and screened against; their addresses are kept as
written after a shape check, except where a format is easy to verify (Tron,
Ethereum Classic).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from compliance.addresses import BITCOIN, ETHEREUM, InvalidAddress, bitcoin_address, ethereum_address
from compliance.encodings import EncodingError, base58check_decode

ACCOUNT = "account"
UTXO = "utxo"

_OPAQUE_RE = re.compile(r"^[0-9A-Za-z:._-]{8,128}$")
_TRON_VERSION = 0x41


def tron_address(text: str) -> str:
    if not text.startswith("T"):
        raise InvalidAddress("Tron addresses start with T.")
    try:
        payload = base58check_decode(text)
    except EncodingError as exc:
        raise InvalidAddress(f"Not a valid Tron address: {exc}.") from None
    if len(payload) != 21 or payload[0] != _TRON_VERSION:
        raise InvalidAddress("Not a Tron address (version 0x41, 20-byte hash).")
    return text


def opaque_address(text: str) -> str:
    """Chains whose formats we do not verify: a plausible token, kept as written."""
    if not _OPAQUE_RE.match(text):
        raise InvalidAddress("Expected 8-128 characters of letters, digits and : . _ -")
    return text


@dataclass(frozen=True)
class ChainSpec:
    code: str
    name: str
    kind: str
    native_symbol: str
    native_decimals: int
    analysed: bool
    normalise: Callable[[str], str]
    verified_format: bool = True


CHAIN_SPECS: dict[str, ChainSpec] = {
    spec.code: spec
    for spec in (
        ChainSpec(ETHEREUM, "Ethereum", ACCOUNT, "ETH", 18, True, ethereum_address),
        ChainSpec(BITCOIN, "Bitcoin", UTXO, "BTC", 8, True, bitcoin_address),
        ChainSpec("tron", "Tron", ACCOUNT, "TRX", 6, False, tron_address),
        ChainSpec("ethereum_classic", "Ethereum Classic", ACCOUNT, "ETC", 18, False, ethereum_address),
        ChainSpec("litecoin", "Litecoin", UTXO, "LTC", 8, False, opaque_address, False),
        ChainSpec("bitcoin_cash", "Bitcoin Cash", UTXO, "BCH", 8, False, opaque_address, False),
        ChainSpec("bitcoin_sv", "Bitcoin SV", UTXO, "BSV", 8, False, opaque_address, False),
        ChainSpec("bitcoin_gold", "Bitcoin Gold", UTXO, "BTG", 8, False, opaque_address, False),
        ChainSpec("dash", "Dash", UTXO, "DASH", 8, False, opaque_address, False),
        ChainSpec("zcash", "Zcash", UTXO, "ZEC", 8, False, opaque_address, False),
        ChainSpec("monero", "Monero", UTXO, "XMR", 12, False, opaque_address, False),
        ChainSpec("verge", "Verge", UTXO, "XVG", 6, False, opaque_address, False),
        ChainSpec("bnb_beacon", "BNB Beacon Chain", ACCOUNT, "BNB", 8, False, opaque_address, False),
        ChainSpec("solana", "Solana", ACCOUNT, "SOL", 9, False, opaque_address, False),
        ChainSpec("xrp_ledger", "XRP Ledger", ACCOUNT, "XRP", 6, False, opaque_address, False),
    )
}


def unmapped_chain_spec(asset: str) -> ChainSpec:
    """A list asset no chain is known for: its addresses are still kept, on a
    chain named after the asset, rather than dropped from screening."""
    code = re.sub(r"[^a-z0-9_]", "_", asset.lower())[:30] or "unknown"
    return ChainSpec(code, f"{asset} (unmapped list asset)", ACCOUNT, asset[:20], 0, False, opaque_address, False)


@dataclass(frozen=True)
class TokenSpec:
    symbol: str
    name: str
    contract: str
    decimals: int


# Reference data for valuing demo and imported transfers: contracts of the
# main dollar stablecoins and wrapped ether, in checksummed form so that a
# typo fails validation instead of pointing at someone else's contract.
KNOWN_TOKENS: dict[str, tuple[TokenSpec, ...]] = {
    ETHEREUM: (
        TokenSpec("USDT", "Tether USD", "0xdAC17F958D2ee523a2206206994597C13D831ec7", 6),
        TokenSpec("USDC", "USD Coin", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6),
        TokenSpec("DAI", "Dai Stablecoin", "0x6B175474E89094C44Da98b954EedeAC495271d0F", 18),
        TokenSpec("WETH", "Wrapped Ether", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", 18),
    ),
}

STABLECOINS = frozenset({"USDT", "USDC", "DAI"})

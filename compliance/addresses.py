"""Address validation and normalisation per chain (no Django import).

Ethereum: ``0x`` and 40 hex digits. All-lowercase and all-uppercase digits
carry no checksum and are accepted; mixed case is an EIP-55 checksum and must
match. The normal form is lowercase, which is how addresses are stored and
compared (BigQuery exports and the OFAC list disagree on case).

Bitcoin (mainnet): base58check P2PKH (version 0x00) and P2SH (0x05), kept as
written (base58 is case-sensitive); segwit ``bc1`` addresses, bech32 for
witness version 0 (20- or 32-byte programs) and bech32m for versions 1-16
(BIP-350), normalised to lowercase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from compliance.encodings import EncodingError, base58check_decode, base58check_encode, segwit_decode, segwit_encode
from compliance.keccak import keccak256
from realtime.errors import NotFound, ValidationFailed

ETHEREUM = "ethereum"
BITCOIN = "bitcoin"
SUPPORTED_CHAINS = (ETHEREUM, BITCOIN)

_EVM_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_P2PKH_VERSION = 0x00
_P2SH_VERSION = 0x05
_SEGWIT_HRP = "bc"


class InvalidAddress(ValueError):
    """An address that is not valid on its chain; the message says why."""


class UnknownChain(NotFound):
    pass


@dataclass(frozen=True)
class BitcoinAddress:
    address: str  # normal form
    kind: str  # p2pkh, p2sh, p2wpkh, p2wsh, p2tr or witness_v<N>
    program: bytes  # hash160, script hash or witness program


def ethereum_checksum(address: str) -> str:
    """The EIP-55 mixed-case form of a valid address."""
    digits = ethereum_address(address)[2:]
    digest = keccak256(digits.encode("ascii")).hex()[:40]
    return "0x" + "".join(ch.upper() if int(nibble, 16) >= 8 else ch for ch, nibble in zip(digits, digest, strict=True))


def ethereum_address(text: str) -> str:
    if not _EVM_RE.match(text):
        raise InvalidAddress("Expected 0x followed by 40 hexadecimal digits.")
    digits = text[2:]
    lower = digits.lower()
    if digits != lower and digits != digits.upper():
        digest = keccak256(lower.encode("ascii")).hex()[:40]
        for ch, nibble in zip(digits, digest, strict=True):
            if ch.isalpha() and ch.isupper() != (int(nibble, 16) >= 8):
                raise InvalidAddress("Mixed-case address fails its EIP-55 checksum.")
    return "0x" + lower


def parse_bitcoin_address(text: str) -> BitcoinAddress:
    if text[:3].lower() == _SEGWIT_HRP + "1":
        try:
            version, program = segwit_decode(_SEGWIT_HRP, text)
        except EncodingError as exc:
            raise InvalidAddress(f"Not a valid segwit address: {exc}.") from None
        if version == 0:
            kind = "p2wpkh" if len(program) == 20 else "p2wsh"
        elif version == 1 and len(program) == 32:
            kind = "p2tr"
        else:
            kind = f"witness_v{version}"
        return BitcoinAddress(text.lower(), kind, program)
    try:
        payload = base58check_decode(text)
    except EncodingError as exc:
        raise InvalidAddress(f"Not a valid base58check address: {exc}.") from None
    if len(payload) != 21 or payload[0] not in (_P2PKH_VERSION, _P2SH_VERSION):
        raise InvalidAddress("Not a mainnet P2PKH (1...) or P2SH (3...) address.")
    return BitcoinAddress(text, "p2pkh" if payload[0] == _P2PKH_VERSION else "p2sh", payload[1:])


def bitcoin_address(text: str) -> str:
    return parse_bitcoin_address(text).address


def encode_bitcoin_address(kind: str, program: bytes) -> str:
    """The address of a hash or witness program (used to build test and demo
    addresses that real wallets would accept)."""
    if kind == "p2pkh":
        return base58check_encode(bytes([_P2PKH_VERSION]) + program)
    if kind == "p2sh":
        return base58check_encode(bytes([_P2SH_VERSION]) + program)
    versions = {"p2wpkh": 0, "p2wsh": 0, "p2tr": 1}
    if kind not in versions:
        raise ValueError(f"unknown address kind {kind!r}")
    return segwit_encode(_SEGWIT_HRP, versions[kind], program)


_NORMALISERS = {ETHEREUM: ethereum_address, BITCOIN: bitcoin_address}


def normalize_chain_address(chain: str, address: str) -> str:
    """The normal form, or ``InvalidAddress`` / ``UnknownChain``."""
    normaliser = _NORMALISERS.get(chain)
    if normaliser is None:
        raise UnknownChain(f"unknown chain {chain[:40]!r}")
    return normaliser(address)


def normalize_address(chain: str, address: str, *, field: str = "address") -> str:
    """The normal form for the wire: an invalid address is a ``ValidationFailed``
    naming ``field``; an unknown chain is ``UnknownChain`` (NOT_FOUND)."""
    try:
        return normalize_chain_address(chain, address)
    except InvalidAddress as exc:
        raise ValidationFailed(f"invalid {chain} address", {field: [str(exc)]}) from None


def is_valid_address(chain: str, address: str) -> bool:
    try:
        normalize_chain_address(chain, address)
    except (InvalidAddress, UnknownChain):
        return False
    return True

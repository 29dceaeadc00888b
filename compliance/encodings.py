"""Bitcoin address encodings: base58check (legacy P2PKH/P2SH) and
bech32/bech32m (BIP-173, BIP-350) for segregated-witness outputs.

Decoders raise ``EncodingError`` with a reason a person can act on; the
address layer turns it into a field error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from enum import Enum

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {ch: i for i, ch in enumerate(BASE58_ALPHABET)}

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_INDEX = {ch: i for i, ch in enumerate(BECH32_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_MAX_BECH32_LENGTH = 90


class EncodingError(ValueError):
    pass


class Bech32Variant(Enum):
    BECH32 = 1
    BECH32M = 0x2BC830A3


# --- base58check ------------------------------------------------------------


def _double_sha256(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def base58check_encode(payload: bytes) -> str:
    raw = payload + _double_sha256(payload)[:4]
    number = int.from_bytes(raw, "big")
    digits = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(BASE58_ALPHABET[remainder])
    zeros = len(raw) - len(raw.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(digits))


def base58check_decode(text: str) -> bytes:
    """The payload (version byte included) of a base58check string."""
    if not text:
        raise EncodingError("empty")
    number = 0
    for ch in text:
        digit = _BASE58_INDEX.get(ch)
        if digit is None:
            raise EncodingError(f"character {ch!r} is not base58")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    raw = b"\x00" * zeros + body
    if len(raw) < 5:
        raise EncodingError("too short")
    payload, checksum = raw[:-4], raw[-4:]
    if _double_sha256(payload)[:4] != checksum:
        raise EncodingError("checksum mismatch")
    return payload


# --- bech32 / bech32m ---------------------------------------------------------


def _polymod(values: Iterable[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = ((checksum & 0x1FFFFFF) << 5) ^ value
        for i in range(5):
            if (top >> i) & 1:
                checksum ^= _GENERATOR[i]
    return checksum


def _expand_hrp(hrp: str) -> list[int]:
    return [ord(ch) >> 5 for ch in hrp] + [0] + [ord(ch) & 31 for ch in hrp]


def bech32_encode(hrp: str, data: list[int], variant: Bech32Variant) -> str:
    values = _expand_hrp(hrp) + data
    polymod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ variant.value
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32_CHARSET[d] for d in data + checksum)


def bech32_decode(text: str) -> tuple[str, list[int], Bech32Variant]:
    """(hrp, 5-bit data without checksum, variant) of a bech32 or bech32m string."""
    if len(text) > _MAX_BECH32_LENGTH:
        raise EncodingError("longer than 90 characters")
    if any(ord(ch) < 33 or ord(ch) > 126 for ch in text):
        raise EncodingError("character out of range")
    if text.lower() != text and text.upper() != text:
        raise EncodingError("mixed case")
    text = text.lower()
    separator = text.rfind("1")
    if separator < 1:
        raise EncodingError("no human-readable part")
    if separator + 7 > len(text):
        raise EncodingError("checksum too short")
    hrp, rest = text[:separator], text[separator + 1 :]
    data = []
    for ch in rest:
        value = _BECH32_INDEX.get(ch)
        if value is None:
            raise EncodingError(f"character {ch!r} is not bech32")
        data.append(value)
    residue = _polymod(_expand_hrp(hrp) + data)
    for variant in Bech32Variant:
        if residue == variant.value:
            return hrp, data[:-6], variant
    raise EncodingError("checksum mismatch")


def convert_bits(data: Iterable[int], from_bits: int, to_bits: int, *, pad: bool) -> list[int]:
    accumulator = 0
    bits = 0
    result = []
    max_value = (1 << to_bits) - 1
    for value in data:
        if value < 0 or value >> from_bits:
            raise EncodingError("value out of range")
        accumulator = (accumulator << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            result.append((accumulator >> bits) & max_value)
    if pad:
        if bits:
            result.append((accumulator << (to_bits - bits)) & max_value)
    elif bits >= from_bits:
        raise EncodingError("more than 4 bits of padding")
    elif (accumulator << (to_bits - bits)) & max_value:
        raise EncodingError("non-zero padding")
    return result


def segwit_decode(hrp: str, text: str) -> tuple[int, bytes]:
    """(witness version, witness program) of a segwit address of network ``hrp``."""
    found_hrp, data, variant = bech32_decode(text)
    if found_hrp != hrp:
        raise EncodingError(f"prefix is {found_hrp!r}, expected {hrp!r}")
    if not data:
        raise EncodingError("empty data section")
    version = data[0]
    if version > 16:
        raise EncodingError(f"witness version {version} is not 0-16")
    program = bytes(convert_bits(data[1:], 5, 8, pad=False))
    if not 2 <= len(program) <= 40:
        raise EncodingError(f"witness program of {len(program)} bytes")
    if version == 0 and len(program) not in (20, 32):
        raise EncodingError("version 0 program must be 20 or 32 bytes")
    expected = Bech32Variant.BECH32 if version == 0 else Bech32Variant.BECH32M
    if variant is not expected:
        raise EncodingError(f"version {version} must use {expected.name.lower()}")
    return version, program


def segwit_encode(hrp: str, version: int, program: bytes) -> str:
    # The same rules as decoding, so that no address is made that wallets refuse.
    if not 0 <= version <= 16 or not 2 <= len(program) <= 40 or (version == 0 and len(program) not in (20, 32)):
        raise EncodingError(f"no segwit address for version {version} with a {len(program)}-byte program")
    variant = Bech32Variant.BECH32 if version == 0 else Bech32Variant.BECH32M
    return bech32_encode(hrp, [version, *convert_bits(program, 8, 5, pad=True)], variant)

"""Keccak-256 as Ethereum uses it (EIP-55 checksums, event topics).

hashlib's ``sha3_256`` is FIPS 202 SHA3-256: the same Keccak-f[1600]
permutation and rate, but a different padding byte (0x06 instead of the
original submission's 0x01), so its digests differ. pycryptodome provides
the original padding, in C.
"""

from __future__ import annotations

from Crypto.Hash import keccak


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()

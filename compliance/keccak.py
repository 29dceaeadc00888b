"""Keccak-256 as Ethereum uses it (EIP-55 checksums, event topics).

hashlib's ``sha3_256`` is FIPS 202 SHA3-256: the same Keccak-f[1600]
permutation and rate, but a different padding byte (0x06 instead of the
original submission's 0x01), so its digests differ. No installed package
provides the original padding, so this is the sponge written out; it is slow
(tens of microseconds per block) and meant for short inputs such as addresses.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1
_RATE_BYTES = 136  # 1088 bits: capacity 512 for a 256-bit digest

# Rotation offsets r[x, y], lane index x + 5 * y.
_ROTATIONS = (
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
)  # fmt: skip


def _round_constants() -> tuple[int, ...]:
    # Derived from the specification's LFSR rather than typed in, so that a
    # transcription error cannot hide in 24 magic numbers.
    state = 1
    constants = []
    for _ in range(24):
        constant = 0
        for j in range(7):
            if state & 1:
                constant |= 1 << ((1 << j) - 1)
            state <<= 1
            if state & 0x100:
                state ^= 0x171
        constants.append(constant)
    return tuple(constants)


_ROUND_CONSTANTS = _round_constants()

# Destination lane of the pi step for each source lane: B[y, 2x + 3y] = A[x, y].
_PI = tuple(y + 5 * ((2 * x + 3 * y) % 5) for y in range(5) for x in range(5))
_PI_SOURCE = tuple(x + 5 * y for y in range(5) for x in range(5))


def _permute(lanes: list[int]) -> None:
    a = lanes
    for constant in _ROUND_CONSTANTS:
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & _MASK) for x in range(5)]
        b = [0] * 25
        for source, target in zip(_PI_SOURCE, _PI, strict=True):
            value = a[source] ^ d[source % 5]
            shift = _ROTATIONS[source]
            b[target] = ((value << shift) | (value >> (64 - shift))) & _MASK if shift else value
        for y in range(0, 25, 5):
            row = b[y : y + 5]
            for x in range(5):
                a[y + x] = row[x] ^ ((~row[(x + 1) % 5]) & row[(x + 2) % 5])
        a[0] ^= constant


def sponge_256(data: bytes, domain: int) -> bytes:
    """A 256-bit digest with rate 1088 and the given padding byte: 0x01 for
    Keccak-256, 0x06 for SHA3-256 (which lets tests check the permutation
    against hashlib)."""
    padded = bytearray(data)
    padded.append(domain)
    padded.extend(b"\x00" * (-len(padded) % _RATE_BYTES))
    padded[-1] |= 0x80
    lanes = [0] * 25
    for start in range(0, len(padded), _RATE_BYTES):
        block = padded[start : start + _RATE_BYTES]
        for i in range(_RATE_BYTES // 8):
            lanes[i] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        _permute(lanes)
    return b"".join(lane.to_bytes(8, "little") for lane in lanes[:4])


def keccak256(data: bytes) -> bytes:
    return sponge_256(data, 0x01)

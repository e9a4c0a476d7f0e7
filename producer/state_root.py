"""The state root: a lattice hash of the committed state, updated from a block's writes.

The state is a set of entries (contract, key, value). Each entry hashes to a vector of
LANES 16-bit lanes (SHAKE-256, LANES × 2 bytes); the root is the lane-wise sum, mod
2^16, of the vectors of every entry -- the construction of Solana's accounts lattice
hash (LtHash, Bellare-Micciancio; 1024 lanes of 16 bits is its parameter set, chosen so
that the generalized-birthday attacks that break a 256-bit additive hash do not apply).
Adding an entry adds its vector, removing one subtracts it, so a block moves the root
by what it writes and nothing else: overwriting a key subtracts the old entry and adds
the new one. The order of the writes does not matter, only the state they leave.

The root lives in Redis at `{p}:root` as LANES little-endian u16s; the scripts that
write state add a block's delta to it in the same atomic step (protocol.ROOT_LUA). Its
checksum (BLAKE2b-256 of those bytes, hex) is what the block record and
`wesfarm state-root` show. Versions are not part of an entry: two farms that committed
the same state agree on the root whatever their version counters say.

Python's integers do the lane arithmetic: a vector is one 16,384-bit integer, lane i in
bits 16i..16i+15, and a lane-wise sum is SWAR -- add the low 15 bits of every lane (the
carry out of a lane's bit 14 lands in its bit 15, never in the next lane) and set each
lane's top bit to the XOR of both top bits and that carry.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

LANES = 1024
ROOT_BYTES = 2 * LANES
_TOP = int.from_bytes(b"\x00\x80" * LANES, "little")  # bit 15 of every lane
_LOW = _TOP ^ ((1 << (16 * LANES)) - 1)
_ONES = int.from_bytes(b"\x01\x00" * LANES, "little")
_ALL = (1 << (16 * LANES)) - 1
_DOMAIN = b"wesfarm-lthash-1"
ZERO = 0


def add(a: int, b: int) -> int:
    """Lane-wise a + b mod 2^16."""
    return ((a & _LOW) + (b & _LOW)) ^ ((a ^ b) & _TOP)


def neg(a: int) -> int:
    """Lane-wise -a mod 2^16 (the two's complement of every lane)."""
    return add(a ^ _ALL, _ONES)


def entry(contract: str, key: bytes, value: bytes) -> int:
    """The vector of one entry (its three parts length-prefixed: no two entries share it)."""
    h = hashlib.shake_256(_DOMAIN)
    for part in (contract.encode(), key, value):
        h.update(struct.pack(">I", len(part)))
        h.update(part)
    return int.from_bytes(h.digest(ROOT_BYTES), "little")


def moved(changes: Iterable[tuple[str, bytes, bytes | None, bytes | None]]) -> int:
    """What writing each (contract, key, old, new) adds to the root: the sum of the
    changes, with one negation for all the old entries, none for a value rewritten as it
    was."""
    plus = minus = ZERO
    for contract, key, old, new in changes:
        if old == new:
            continue
        if old is not None:
            minus = add(minus, entry(contract, key, old))
        if new is not None:
            plus = add(plus, entry(contract, key, new))
    return add(plus, neg(minus))


def of_entries(entries: Iterable[tuple[str, bytes, bytes]]) -> int:
    """The root of a whole state, from scratch."""
    root = ZERO
    for contract, key, value in entries:
        root = add(root, entry(contract, key, value))
    return root


def to_bytes(root: int) -> bytes:
    return root.to_bytes(ROOT_BYTES, "little")


def from_bytes(raw: bytes) -> int:
    if len(raw) != ROOT_BYTES:
        raise ValueError(f"a state root is {ROOT_BYTES} bytes, got {len(raw)}")
    return int.from_bytes(raw, "little")


def checksum(root: int) -> str:
    """The root as the block record shows it: BLAKE2b-256 of its bytes, hex."""
    return hashlib.blake2b(to_bytes(root), digest_size=32).hexdigest()

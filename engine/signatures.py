"""Signature verification for the ABI's `ed25519_verify`, `secp256k1_verify` and
`secp256k1_recover` (ABI 1.1), on well-kept libraries: PyNaCl (libsodium) for Ed25519,
`coincurve` (Bitcoin Core's libsecp256k1) for secp256k1. Both are pinned
exactly: what they accept is consensus. The rules that are ours -- the lengths, low `s`
only, SEC1 prefixes, the recovery id's range -- are checked here, before either library
sees the bytes; tests/engine/test_signatures.py holds all of it to the Wycheproof vectors.

Each function takes bytes of the ABI's fixed sizes and answers for every input; it never
raises (a verdict, not an error, is what the contract gets).
"""

from __future__ import annotations

import coincurve
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

ED25519_SIGNATURE, ED25519_KEY = 64, 32
SECP256K1_HASH, SECP256K1_SIGNATURE, SECP256K1_RECOVERED = 32, 64, 65
SECP256K1_KEY_LENGTHS = {33: (2, 3), 65: (4,)}  # SEC1 prefixes: compressed, uncompressed
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def ed25519_verify(signature: bytes, message: bytes, public_key: bytes) -> bool:
    """RFC 8032 verification as libsodium does it: a non-canonical S, a small-order key
    or R, and a non-canonical key encoding are invalid."""
    if len(signature) != ED25519_SIGNATURE or len(public_key) != ED25519_KEY:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def _low_s(signature: bytes) -> bool:
    """r and s in 1..n-1 and s at most n/2 (a malleable high-s twin is refused)."""
    if len(signature) != SECP256K1_SIGNATURE:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    return 0 < r < SECP256K1_ORDER and 0 < s <= SECP256K1_ORDER // 2


def secp256k1_verify(digest: bytes, signature: bytes, public_key: bytes) -> bool:
    """ECDSA over secp256k1 of a 32-byte hash, `r ‖ s` big-endian, a SEC1 key."""
    prefixes = SECP256K1_KEY_LENGTHS.get(len(public_key), ())
    if len(digest) != SECP256K1_HASH or not public_key or public_key[0] not in prefixes:
        return False
    if not _low_s(signature):
        return False
    try:
        key = coincurve.PublicKey(public_key)
        return bool(key.verify(cdata_to_der(deserialize_compact(signature)), digest,
                               hasher=None))
    except ValueError:  # not a point on the curve
        return False


def secp256k1_recover(digest: bytes, signature: bytes, recovery_id: int) -> bytes | None:
    """The uncompressed key (`04 ‖ x ‖ y`) that signed `digest`, or None."""
    if len(digest) != SECP256K1_HASH or not 0 <= recovery_id <= 3 or not _low_s(signature):
        return None
    try:
        key = coincurve.PublicKey.from_signature_and_message(
            signature + bytes((recovery_id,)), digest, hasher=None)
    except ValueError:  # no point with that x, or no key recovers
        return None
    out = key.format(compressed=False)
    return out if len(out) == SECP256K1_RECOVERED else None

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


# Known answers every node must give (Wycheproof cases; tests/data/wycheproof): a release
# of libsodium or libsecp256k1 that judges any of them otherwise -- a wheel built against
# a system library, say -- would fork the chain, so the engine refuses to load with it.
_ED25519_KEY = "7d4d0e7f6153a69b6242b522abbee685fda4420f8834b108c3bdae369ef549fa"
_ED25519_KNOWN = (  # (key, message, signature, valid)
    (_ED25519_KEY, "", "d4fbdb52bfa726b44d1786a8c0d171c3e62ca83c9e5bbe63de0bb2483f8fd6cc1429ab"
     "72cafc41ab56af02ff8fcc43b99bfe4c7ae940f60f38ebaa9d311c4007", True),
    (_ED25519_KEY, "313233343030", "647c1492402ab5ce03e2c3a7f0384d051b9cf3570f1207fc78c1bcc9"
     "8c281c2b1d125e5538f38afbcc1c84e489521083041d24bc6240767029da063271a1ff0c", False),
    (_ED25519_KEY, "54657374", "7c38e026f29e14aabd059a0f2db8b0cd783040609a8be684db12f82a2777"
     "4ab067654bce3832c2d76f8f6f5dafc08d9339d4eef676573336a5c51eb6f946b31d", False),
    ("100fdf47fb94f1536a4f7c3fda27383fa03375a8f527c537e6f1703c47f94f86",
     "6a0bc2b0057cedfc0fa2e3f7f7d39279b30f454a69dfd1117c758d86b19d85e0", "0971f86d2c9c78582524"
     "a103cb9cf949522ae528f8054dc20107d999be673ff4e25ebf2f2928766b1248bec6e91697775f8446639e"
     "de46ad4df4053000000010", False),
)
_K1_KEY = ("04b838ff44e5bc177bf21189d0766082fc9d843226887fc9760371100b7ee20a6ff0c9d75bfba7b31a"
           "6bca1974496eeb56de357071955d83c4b1badaa0b21832e9")
_K1_HASH = "b78f33ca6d031315ab4c29b4429e6e8f8978517d49192c90fb2266bea6842918"
_K1_SIG = ("dd1b7d09a7bd8218961034a39a87fecf5314f00c4d25eb58a07ac85e85eab51635138c401ef8d3493d"
           "65c9002fe62b43aee568731b744548358996d9cc427e06")


def check_known_answers() -> None:
    """Raise RuntimeError unless the libraries give the known answers."""
    wrong = [f"ed25519 case {i}" for i, (key, msg, sig, valid) in enumerate(_ED25519_KNOWN)
             if ed25519_verify(bytes.fromhex(sig), bytes.fromhex(msg), bytes.fromhex(key))
             != valid]
    key, digest, sig = bytes.fromhex(_K1_KEY), bytes.fromhex(_K1_HASH), bytes.fromhex(_K1_SIG)
    high = sig[:32] + (SECP256K1_ORDER - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    compressed = bytes((2 + key[64] % 2,)) + key[1:33]
    if not (secp256k1_verify(digest, sig, key) and secp256k1_verify(digest, sig, compressed)):
        wrong.append("secp256k1 valid signature")
    if secp256k1_verify(digest, high, key):
        wrong.append("secp256k1 high-s twin")
    if key not in {secp256k1_recover(digest, sig, recid) for recid in range(4)}:
        wrong.append("secp256k1 recovery")
    if wrong:
        raise RuntimeError("signature libraries disagree with the consensus rules ("
                           + ", ".join(wrong) + "): install the pinned PyNaCl and coincurve "
                           "wheels, which bundle their own libsodium and libsecp256k1")


check_known_answers()

"""ABI 1.1's signature functions: engine/signatures.py and `wes.ed25519_verify`,
`wes.secp256k1_verify`, `wes.secp256k1_recover` on both host paths, held to the
Wycheproof vectors (tests/data/wycheproof), the ABI's low-s rule, its prices and its
bounds."""

from __future__ import annotations

import hashlib
import json
import struct
from functools import cache
from pathlib import Path
from typing import Any

import coincurve
import pytest
from Crypto.Hash import keccak

from engine import WasmEngine, signatures
from engine.signatures import (
    SECP256K1_ORDER,
    check_known_answers,
    ed25519_verify,
    secp256k1_recover,
    secp256k1_verify,
)
from tests.support import TEST_FEES
from tests.support.contracts import Chain, module

VECTORS = Path(__file__).resolve().parents[1] / "data" / "wycheproof"
HALF = SECP256K1_ORDER // 2
# Entry points (inputs little-endian where they hold numbers):
#   ed      sig(64) ‖ pk(32) ‖ msg                  -> u32 verdict
#   k1      u32 pk_len ‖ hash(32) ‖ sig(64) ‖ pk     -> u32 verdict
#   recover u32 recid ‖ hash(32) ‖ sig(64)           -> u32 verdict ‖ 65 bytes at dst
#   far     u32 which ‖ hash(32) ‖ sig(64) ‖ u32 recid: one function (by `which`) with
#           one pointer reaching past memory
SIGS = module("""
  (func $in (result i32) (call $input_read (i32.const 0)) (call $input_size))
  (func $answer (param $v i32) (i32.store (i32.const 60000) (local.get $v))
    (call $return_data (i32.const 60000) (i32.const 4)))
  (func (export "ed") (local $n i32)
    (local.set $n (call $in))
    (call $answer (call $ed25519_verify (i32.const 0) (i32.const 96)
                                        (i32.sub (local.get $n) (i32.const 96)) (i32.const 64))))
  (func (export "k1") (local $n i32)
    (local.set $n (call $in))
    (call $answer (call $secp256k1_verify (i32.const 4) (i32.const 36) (i32.const 100)
                                          (i32.load (i32.const 0)))))
  (func (export "recover")
    (drop (call $in))
    (i32.store (i32.const 60000) (call $secp256k1_recover (i32.const 4) (i32.const 36)
                                                          (i32.load (i32.const 0))
                                                          (i32.const 60004)))
    (call $return_data (i32.const 60000) (i32.const 69)))
  (func (export "far") (local $which i32)
    (drop (call $in))
    (local.set $which (i32.load (i32.const 0)))
    (if (i32.eq (local.get $which) (i32.const 0))
      (then (drop (call $ed25519_verify (i32.const 65500) (i32.const 0) (i32.const 0)
                                        (i32.const 0)))))
    (if (i32.eq (local.get $which) (i32.const 1))
      (then (drop (call $secp256k1_verify (i32.const 0) (i32.const 0) (i32.const 65520)
                                          (i32.const 33)))))
    (if (i32.eq (local.get $which) (i32.const 2))
      (then (drop (call $secp256k1_recover (i32.const 4) (i32.const 36)
                                           (i32.load (i32.const 100)) (i32.const 65500))))))
""")


@cache
def _vectors(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text())
    return [{**case, "group": group} for group in data["testGroups"] for case in group["tests"]]


def _ed_cases() -> list[tuple[bytes, bytes, bytes, bool]]:
    return [(bytes.fromhex(c["sig"]), bytes.fromhex(c["msg"]),
             bytes.fromhex(c["group"]["publicKey"]["pk"]), c["result"] == "valid")
            for c in _vectors("ed25519_test.json")]


def _k1_cases() -> list[tuple[bytes, bytes, bytes, bool]]:
    """(hash, sig, uncompressed key, expected): Wycheproof's verdict, and low s."""
    out = []
    for c in _vectors("ecdsa_secp256k1_sha256_p1363_test.json"):
        sig = bytes.fromhex(c["sig"])
        low = len(sig) == 64 and int.from_bytes(sig[32:], "big") <= HALF
        out.append((hashlib.sha256(bytes.fromhex(c["msg"])).digest(), sig,
                    bytes.fromhex(c["group"]["publicKey"]["uncompressed"]),
                    c["result"] == "valid" and low))
    return out


@pytest.fixture(params=[True, False], ids=["raw", "public"])
def chain(request: pytest.FixtureRequest, engines: dict[bool, WasmEngine]) -> Chain:
    c = Chain(engines[request.param])
    c.deploy("sigs", SIGS)
    return c


def _verdict(chain: Chain, function: str, data: bytes, **kw: Any) -> int:
    r = chain.run("sigs", function, data, **kw)
    assert r.status == "ok", r.error
    return int(struct.unpack("<I", r.return_data[:4])[0])


def _compressed(key: bytes) -> bytes:
    return bytes((2 + key[64] % 2,)) + key[1:33]


def test_a_library_that_judges_a_known_case_otherwise_stops_the_engine_loading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_known_answers()  # the pinned wheels pass
    monkeypatch.setattr(signatures, "ed25519_verify", lambda sig, msg, key: True)
    with pytest.raises(RuntimeError, match="ed25519 case 1"):
        check_known_answers()
    monkeypatch.undo()
    monkeypatch.setattr(signatures, "secp256k1_verify", lambda digest, sig, key: True)
    with pytest.raises(RuntimeError, match="high-s twin"):
        check_known_answers()


def test_the_vectors_hold_what_the_suite_relies_on() -> None:
    ed, k1 = _ed_cases(), _k1_cases()
    assert len(ed) == 151 and sum(c[3] for c in ed) == 88
    assert len(k1) == 252
    # high-s twins of valid signatures exist, so the low-s rule is exercised
    assert any(len(s) == 64 and int.from_bytes(s[32:], "big") > HALF for _, s, _, _ in k1)


def test_ed25519_agrees_with_wycheproof() -> None:
    wrong = [i for i, (sig, msg, pk, valid) in enumerate(_ed_cases())
             if ed25519_verify(sig, msg, pk) != valid]
    assert wrong == []


def test_secp256k1_agrees_with_wycheproof_and_refuses_high_s() -> None:
    cases = _k1_cases()
    wrong = [i for i, (h, sig, pk, valid) in enumerate(cases)
             if secp256k1_verify(h, sig, pk) != valid
             or (len(sig) == 64 and secp256k1_verify(h, sig, _compressed(pk)) != valid)]
    assert wrong == []
    assert sum(valid for *_, valid in cases) > 50


def test_recovery_finds_the_signing_key_and_only_for_low_s() -> None:
    recovered = 0
    for h, sig, pk, valid in _k1_cases():
        if len(sig) != 64:
            continue
        keys = {secp256k1_recover(h, sig, recid) for recid in range(4)}
        if valid:
            assert pk in keys
            recovered += 1
            # its malleable twin (n - s, high) verifies nowhere and recovers nothing
            s = int.from_bytes(sig[32:], "big")
            twin = sig[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big")
            assert not secp256k1_verify(h, twin, pk)
            assert {secp256k1_recover(h, twin, recid) for recid in range(4)} == {None}
        elif int.from_bytes(sig[32:], "big") > HALF:
            assert keys == {None}
    assert recovered > 50


def test_every_vector_through_the_contract(chain: Chain) -> None:
    """Every case whose signature has the ABI's 64 bytes (others cannot be passed)."""
    passed = 0
    for sig, msg, pk, valid in _ed_cases():
        if len(sig) == 64:
            assert _verdict(chain, "ed", sig + pk + msg) == valid
            passed += 1
    for h, sig, pk, valid in _k1_cases():
        if len(sig) == 64:
            for key in (pk, _compressed(pk)):
                assert _verdict(chain, "k1", struct.pack("<I", len(key)) + h + sig + key) == valid
            passed += 1
    assert passed > 300


def test_ethereum_address_from_recover(chain: Chain) -> None:
    """web3.js's documented account: the address is keccak256 of the key's 64 bytes."""
    secret = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    digest = keccak.new(digest_bits=256, data=b"a signed message").digest()
    signed = coincurve.PrivateKey(secret).sign_recoverable(digest, hasher=None)
    r = chain.run("sigs", "recover", struct.pack("<I", signed[64]) + digest + signed[:64])
    assert r.status == "ok" and r.return_data[:4] == struct.pack("<I", 1)
    key = r.return_data[4:]
    address = keccak.new(digest_bits=256, data=key[1:]).digest()[-20:]
    assert address.hex() == "2c7536e3605d9c16a7a3d7b1898e529396a65c23"
    # a recovery id outside 0..3 (or -1 as an i32) recovers nothing and writes nothing
    for recid in (4, 0xFFFFFFFF):
        r = chain.run("sigs", "recover", struct.pack("<I", recid) + digest + signed[:64])
        assert r.return_data == bytes(69)


def test_prices_and_the_key_length_rule(chain: Chain) -> None:
    sig, _, pk, _ = _ed_cases()[0]
    for body in (b"", b"m" * 1_000):
        r = chain.run("sigs", "ed", sig + pk + body)
        assert r.fee.breakdown["signatures"] == (TEST_FEES["ed25519_verify"]
                                                 + len(body) * TEST_FEES["ed25519_byte"])
    h, k1sig, key, _ = next(c for c in _k1_cases() if c[3])
    # a key length that is neither 33 nor 65: 0, and nothing past the signature is read,
    # however far the length would reach
    for length in (0, 32, 64, 66, 0xFFFFFFFF):
        r = chain.run("sigs", "k1", struct.pack("<I", length) + h + k1sig + key)
        assert r.status == "ok" and r.return_data[:4] == bytes(4)
        assert r.fee.breakdown["signatures"] == TEST_FEES["secp256k1_verify"]
    r = chain.run("sigs", "recover", struct.pack("<I", 0) + h + k1sig)
    assert r.fee.breakdown["signatures"] == TEST_FEES["secp256k1_recover"]


def test_charged_before_the_work_and_allowed_in_view(chain: Chain) -> None:
    sig, msg, pk, _ = _ed_cases()[0]
    r = chain.run("sigs", "ed", sig + pk + b"m" * 30_000, fee_limit=250_000)
    assert r.status == "out_of_fee" and r.error is not None
    assert "wes.ed25519_verify" in r.error["message"]
    assert _verdict(chain, "ed", sig + pk + msg, mode="view") == 1


@pytest.mark.parametrize("which,name", [(0, "ed25519_verify"), (1, "secp256k1_verify"),
                                        (2, "secp256k1_recover")])
def test_a_pointer_past_memory_traps_naming_the_function(chain: Chain, which: int,
                                                         name: str) -> None:
    h, sig, key, _ = next(c for c in _k1_cases() if c[3])
    recid = next(i for i in range(4) if secp256k1_recover(h, sig, i) == key)
    # recover: a key that does recover, written where it does not fit
    r = chain.run("sigs", "far", struct.pack("<I", which) + h + sig + struct.pack("<I", recid))
    assert r.status == "trap" and r.error is not None
    assert f"wes.{name}" in r.error["message"], r.error

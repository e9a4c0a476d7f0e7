"""The notary example (examples/contracts/notary): one signed message per key holder, for
Ed25519 keys, secp256k1 keys and Ethereum addresses, on both host paths; signatures are
made here with the same libraries a wallet would use."""

from __future__ import annotations

import hashlib
import struct

import coincurve
import pytest
from Crypto.Hash import keccak
from nacl.signing import SigningKey

from engine import Result, WasmEngine
from tests.support.contracts import Chain, example

ADDRESS = "notary"
ETH_SECRET = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
ETH_ADDRESS = bytes.fromhex("2c7536e3605d9c16a7a3d7b1898e529396a65c23")


@pytest.fixture(params=[True, False], ids=["raw", "public"])
def chain(request: pytest.FixtureRequest, engines: dict[bool, WasmEngine]) -> Chain:
    c = Chain(engines[request.param])
    c.deploy(ADDRESS, example("notary"))
    return c


def _keccak(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()  # type: ignore[no-any-return]


def _payload(nonce: int, message: bytes) -> bytes:
    return ADDRESS.encode() + struct.pack("<Q", nonce) + message


def _view(chain: Chain, function: str, holder: bytes) -> bytes:
    r = chain.run(ADDRESS, function, holder, mode="view")
    assert r.status == "ok", r.error
    return r.return_data


def _post(chain: Chain, function: str, data: bytes) -> Result:
    return chain.run(ADDRESS, function, data, commit=True, fee_limit=10**8)


def test_ed25519_posts_count_the_nonce_and_refuse_replays(chain: Chain) -> None:
    key = SigningKey(bytes(range(32)))
    pk = bytes(key.verify_key)
    holder = b"ed:" + pk
    for nonce, message in enumerate((b"first", b"second")):
        signed = key.sign(_payload(nonce, message)).signature
        r = _post(chain, "post_ed25519", pk + signed + message)
        assert r.status == "ok", r.error
        assert r.events == [(b"posted", holder)]
        assert _view(chain, "message", holder) == message
        assert _view(chain, "nonce", holder) == struct.pack("<Q", nonce + 1)
    replay = _post(chain, "post_ed25519", pk + signed + b"second")
    assert replay.status == "reverted" and replay.return_data == b"bad signature"
    forged = key.sign(_payload(2, b"mine")).signature
    other = bytes(SigningKey(bytes(32)).verify_key)
    r = _post(chain, "post_ed25519", other + forged + b"mine")  # someone else's key
    assert r.status == "reverted" and r.write_set == {}


def test_secp256k1_posts_sign_the_sha256_of_the_payload(chain: Chain) -> None:
    key = coincurve.PrivateKey(bytes(range(1, 33)))
    pk = key.public_key.format(compressed=True)
    signed = key.sign_recoverable(hashlib.sha256(_payload(0, b"hi")).digest(), hasher=None)
    r = _post(chain, "post_secp256k1", pk + signed[:64] + b"hi")
    assert r.status == "ok", r.error
    assert _view(chain, "message", b"k1:" + pk) == b"hi"
    # the high-s twin of the same signature is refused (malleability)
    s = int.from_bytes(signed[32:64], "big")
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    twin = signed[:32] + (order - s).to_bytes(32, "big")
    signed1 = key.sign_recoverable(hashlib.sha256(_payload(1, b"hi")).digest(), hasher=None)
    assert _post(chain, "post_secp256k1", pk + signed1[:64] + b"hi").status == "ok"
    assert _post(chain, "post_secp256k1", pk + twin + b"hi").status == "reverted"


def test_eth_posts_recover_the_ethereum_address(chain: Chain) -> None:
    key = coincurve.PrivateKey(ETH_SECRET)
    signed = key.sign_recoverable(_keccak(_payload(0, b"gm")), hasher=None)
    data = signed[:64] + signed[64:] + struct.pack("<Q", 0) + b"gm"
    r = _post(chain, "post_eth", data)
    assert r.status == "ok", r.error
    assert r.return_data == ETH_ADDRESS
    assert r.events == [(b"posted", b"eth:" + ETH_ADDRESS)]
    assert _view(chain, "nonce", b"eth:" + ETH_ADDRESS) == struct.pack("<Q", 1)
    assert r.fee.breakdown["signatures"] > 0 and r.fee.breakdown["hashing"] > 0
    # the same signature again states a stale nonce
    assert _post(chain, "post_eth", data).status == "reverted"
    # a wrong recovery id recovers another key (or none): not this holder's post
    bad = signed[:64] + bytes((signed[64] ^ 1,)) + struct.pack("<Q", 1) + b"gm"
    r = _post(chain, "post_eth", bad)
    assert r.status == "reverted" or r.return_data != ETH_ADDRESS


def test_bad_inputs_revert_with_a_reason(chain: Chain) -> None:
    assert _post(chain, "post_ed25519", b"short").return_data == b"input too short"
    r = _post(chain, "post_eth", bytes(73) + b"x" * 1_025)
    assert r.status == "reverted" and r.return_data == b"message too long"
    assert _view(chain, "message", b"ed:" + bytes(32)) == b""

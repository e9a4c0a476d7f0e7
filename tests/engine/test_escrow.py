"""The escrow example (examples/contracts/escrow): it holds the example token for its
depositors and pays out by calling the token contract (ABI 1.1 calls), on both host
paths."""

from __future__ import annotations

import struct

import pytest

from engine import Result, WasmEngine
from tests.support.contracts import Chain, example


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


@pytest.fixture(params=[True, False], ids=["raw", "public"])
def chain(request: pytest.FixtureRequest, engines: dict[bool, WasmEngine]) -> Chain:
    c = Chain(engines[request.param])
    c.deploy("token", example("token"))
    c.deploy("escrow", example("escrow"))
    return c


def run(chain: Chain, contract: str, function: str, data: bytes = b"", **kw: object) -> Result:
    r = chain.run(contract, function, data, fee_limit=10**9, **kw)  # type: ignore[arg-type]
    if r.status == "ok":
        for c, writes in r.writes_by_contract(contract).items():
            chain.state.apply(c, writes)
    return r


def balance(chain: Chain, account: bytes) -> int:
    return int(struct.unpack("<Q", run(chain, "token", "balance_of", account).return_data)[0])


def test_deposit_then_release_moves_the_token_through_the_escrow(chain: Chain) -> None:
    assert run(chain, "token", "mint", u64(100), caller="alice").status == "ok"
    assert run(chain, "token", "transfer", u64(30) + b"escrow", caller="alice").status == "ok"
    deposit = run(chain, "escrow", "deposit", caller="alice")
    assert deposit.status == "ok" and deposit.return_data == u64(30)
    assert deposit.call_read_sets == {"token": {b"bal:escrow": 2}}  # the balance it asked
    again = run(chain, "escrow", "deposit", caller="alice")  # nothing new arrived
    assert again.return_data == u64(30)
    paid = run(chain, "escrow", "release", u64(10) + b"bob", caller="alice")
    assert paid.status == "ok" and paid.return_data == u64(20)
    assert paid.call_write_sets == {"token": {b"bal:bob": u64(10), b"bal:escrow": u64(20)}}
    assert paid.call_events == [("token", b"transfer", b"\x06escrowbob" + u64(10))]
    assert (balance(chain, b"bob"), balance(chain, b"escrow"), balance(chain, b"alice")) == (
        10, 20, 70)


def test_a_release_past_the_credit_or_refused_by_the_token_reverts_everything(
    chain: Chain,
) -> None:
    run(chain, "token", "mint", u64(5), caller="carol")
    run(chain, "token", "transfer", u64(5) + b"escrow", caller="carol")
    run(chain, "escrow", "deposit", caller="carol")
    over = run(chain, "escrow", "release", u64(6) + b"dan", caller="carol")
    assert over.status == "reverted" and over.return_data == b"insufficient credit"
    assert over.call_write_sets == {} and over.write_set == {}
    # credit says 5, but the escrow's token account is drained behind its back: the
    # token's transfer reverts, so does the release, and nothing of either is kept
    chain.state.apply("token", {b"bal:escrow": u64(0)})
    refused = run(chain, "escrow", "release", u64(5) + b"dan", caller="carol")
    assert refused.status == "reverted" and refused.return_data == b"token transfer failed"
    assert refused.call_write_sets == {} and balance(chain, b"dan") == 0
    assert run(chain, "escrow", "credit_of", b"carol").return_data == u64(5)


@pytest.mark.integration  # subprocesses
def test_the_readme_walkthrough_through_wesfarm_run(tmp_path: object) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.support import CONTRACTS, ROOT

    token, escrow = CONTRACTS / "token" / "token.wasm", CONTRACTS / "escrow" / "escrow.wasm"
    state = f"{tmp_path}/es.json"
    beside = ["--contract", f"token={token}", "--state", state]

    def run(*args: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-m", "producer.cli", "run", *args, "--json"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        out: dict[str, object] = json.loads(done.stdout)
        return out

    run(str(token), "mint", "--input-hex", u64(100).hex(), "--caller", "alice", "--state", state)
    run(str(token), "transfer", "--input-hex", (u64(30) + b"escrow").hex(), "--caller", "alice",
        "--state", state)
    assert run(str(escrow), "deposit", "--caller", "alice", *beside)["status"] == "ok"
    paid = run(str(escrow), "release", "--input-hex", (u64(10) + b"bob").hex(), "--caller",
               "alice", *beside)
    assert paid["calls"]["write_sets"]["token"][b"bal:bob".hex()] == u64(10).hex()  # type: ignore[index]
    bob = run(str(token), "balance_of", "--input-hex", b"bob".hex(), "--mode", "view",
              "--state", state)
    assert bob["return_data"] == u64(10).hex()

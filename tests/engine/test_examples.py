"""The example contracts (examples/contracts/README.md) executed by the engine."""

from __future__ import annotations

import pytest

from engine import Result, WasmEngine
from tests.support.contracts import Chain, example, u64

MAX = 2**64 - 1


@pytest.fixture(params=[True, False], ids=["raw", "public"])
def chain(request: pytest.FixtureRequest, engines: dict[bool, WasmEngine]) -> Chain:
    c = Chain(engines[request.param])  # fresh code and state, shared engine
    for name in ("counter", "token", "hello_as"):
        c.deploy(name, example(name))
    return c


def _ok(result: Result) -> Result:
    assert result.status == "ok", result.error
    return result


# -- counter ---------------------------------------------------------------------------

def test_counter_init_incr_get(chain: Chain) -> None:
    assert _ok(chain.run("counter", "get")).return_data == u64(0)  # absent
    init = _ok(chain.run("counter", "init", commit=True, deploy=True))
    assert init.write_set == {b"count": u64(0)} and init.return_data == b""
    for n in range(1, 4):
        r = _ok(chain.run("counter", "incr", commit=True))
        assert r.return_data == u64(n) and r.write_set == {b"count": u64(n)}
        assert r.events == [(b"incr", u64(n))]
    r = _ok(chain.run("counter", "get", mode="view"))
    assert r.return_data == u64(3) and r.write_set == {} and r.events == []


def test_init_runs_only_at_deploy(chain: Chain) -> None:
    _ok(chain.run("counter", "init", commit=True, deploy=True))
    for _ in range(5):
        _ok(chain.run("counter", "incr", commit=True))
    again = chain.run("counter", "init", caller="mallory")
    assert again.status == "invalid" and again.error is not None
    assert again.error == {"kind": "init_at_deploy_only", "message": "init runs only at deploy"}
    assert again.write_set == {} and again.fee.used == 0
    assert _ok(chain.run("counter", "get")).return_data == u64(5)


def test_counter_incr_without_init_and_wrapping(chain: Chain) -> None:
    assert _ok(chain.run("counter", "incr")).return_data == u64(1)
    chain.state.apply("counter", {b"count": u64(MAX)})
    assert _ok(chain.run("counter", "incr")).return_data == u64(0)
    chain.state.apply("counter", {b"count": b"\x05"})  # shorter values are zero-extended
    assert _ok(chain.run("counter", "incr")).return_data == u64(6)


# -- token -----------------------------------------------------------------------------

def _balance(chain: Chain, account: bytes) -> int:
    return int.from_bytes(_ok(chain.run("token", "balance_of", account)).return_data, "little")


def _supply(chain: Chain) -> int:
    return int.from_bytes(_ok(chain.run("token", "total_supply")).return_data, "little")


def test_token_mint_transfer_balance_supply(chain: Chain) -> None:
    r = _ok(chain.run("token", "mint", u64(1_000), caller="alice", commit=True))
    assert r.return_data == u64(1_000) and r.events == []
    assert r.write_set == {b"bal:alice": u64(1_000), b"supply": u64(1_000)}
    r = _ok(chain.run("token", "mint", u64(50) + b"carol", caller="alice", commit=True))
    assert r.return_data == u64(50)
    r = _ok(chain.run("token", "transfer", u64(300) + b"bob", caller="alice", commit=True))
    assert r.return_data == u64(700)
    assert r.write_set == {b"bal:alice": u64(700), b"bal:bob": u64(300)}
    assert r.events == [(b"transfer", b"\x05alice" + b"bob" + u64(300))]
    assert (_balance(chain, b"alice"), _balance(chain, b"bob"), _balance(chain, b"carol")) == \
        (700, 300, 50)
    assert _balance(chain, b"nobody") == 0
    assert _supply(chain) == 1_050


def test_token_self_transfer(chain: Chain) -> None:
    _ok(chain.run("token", "mint", u64(10), caller="alice", commit=True))
    r = _ok(chain.run("token", "transfer", u64(4) + b"alice", caller="alice"))
    assert r.write_set == {} and r.return_data == u64(10)
    assert r.events == [(b"transfer", b"\x05alice" + b"alice" + u64(4))]
    r = chain.run("token", "transfer", u64(11) + b"alice", caller="alice")
    assert r.status == "reverted" and r.return_data == b"insufficient funds"


def test_token_zero_transfer_writes_both(chain: Chain) -> None:
    r = _ok(chain.run("token", "transfer", u64(0) + b"bob", caller="alice"))
    assert r.write_set == {b"bal:alice": u64(0), b"bal:bob": u64(0)}


@pytest.mark.parametrize(("function", "data", "caller", "message"), [
    ("transfer", u64(6) + b"bob", "alice", b"insufficient funds"),
    ("transfer", u64(1), "alice",
     b"bad input: transfer needs 8-byte amount + recipient (1..64 bytes)"),
    ("transfer", u64(1) + b"r" * 65, "alice",
     b"bad input: transfer needs 8-byte amount + recipient (1..64 bytes)"),
    ("transfer", u64(0) + b"bob", "", b"bad caller: address must be 1..64 bytes"),
    ("mint", b"1234567", "alice",
     b"bad input: mint needs 8-byte amount + optional recipient (1..64 bytes)"),
    ("mint", u64(1) + b"r" * 65, "alice",
     b"bad input: mint needs 8-byte amount + optional recipient (1..64 bytes)"),
    ("mint", u64(1), "", b"bad caller: address must be 1..64 bytes"),
    ("mint", u64(MAX), "alice", b"overflow: mint would exceed u64"),
    ("balance_of", b"", "alice",
     b"bad input: balance_of needs an account address (1..64 bytes)"),
    ("balance_of", b"a" * 65, "alice",
     b"bad input: balance_of needs an account address (1..64 bytes)"),
])
def test_token_reverts(chain: Chain, function: str, data: bytes, caller: str,
                       message: bytes) -> None:
    _ok(chain.run("token", "mint", u64(5), caller="alice", commit=True))
    r = chain.run("token", function, data, caller=caller)
    assert r.status == "reverted"
    assert r.return_data == message and r.error == {"kind": "revert",
                                                    "message": message.decode()}
    assert r.write_set == {} and r.events == [] and r.fee.used > 0


def test_token_recipient_overflow(chain: Chain) -> None:
    _ok(chain.run("token", "mint", u64(MAX) + b"bob", commit=True))
    chain.state.apply("token", {b"bal:alice": u64(1)})  # breaks the supply invariant on purpose
    r = chain.run("token", "transfer", u64(1) + b"bob", caller="alice")
    assert r.status == "reverted"
    assert r.return_data == b"overflow: recipient balance would exceed u64"


def test_token_supply_is_the_sum_of_balances(chain: Chain) -> None:
    accounts = [b"alice", b"bob", b"carol", b"d" * 64]
    for i, account in enumerate(accounts):
        _ok(chain.run("token", "mint", u64(100 * (i + 1)) + account, commit=True))
    for i in range(12):
        sender, recipient = accounts[i % 4], accounts[(i * 3 + 1) % 4]
        chain.run("token", "transfer", u64(37 * i) + recipient, caller=sender.decode(),
                  commit=True)
    assert sum(_balance(chain, a) for a in accounts) == _supply(chain) == 1_000


# -- hello_as ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [b"world", b"", b"\xff\x00bytes", b"n" * 65_000])
def test_hello_as_greet(chain: Chain, name: bytes) -> None:
    r = _ok(chain.run("hello_as", "greet", name, mode="view"))
    assert r.return_data == b"hello, " + name
    assert r.logs == [(b"hello, " + name)[:1024]]  # one line, cut at max_log_bytes
    if len(name) > 64_000:
        assert r.fee.breakdown["memory"] > 5_000  # the contract grew its memory


def test_hello_as_greet_when_growth_is_refused(chain: Chain) -> None:
    # 64 KiB of input needs a second page; with 1 page allowed the contract traps
    from config import load_settings

    small = Chain.start(load_settings(cache_dir=chain.engine.settings.cache_dir,
                                      limits={"max_memory_pages": 1}))
    try:
        small.deploy("hello_as", example("hello_as"))
        r = small.run("hello_as", "greet", b"n" * 65_536)
        assert r.status == "trap" and r.error is not None and r.error["kind"] == "unreachable"
        assert _ok(small.run("hello_as", "greet", b"ok")).return_data == b"hello, ok"
    finally:
        small.close()


def test_hello_as_sum_f64_bad_input(chain: Chain) -> None:
    r = chain.run("hello_as", "sum_f64", b"123")
    assert r.status == "reverted"
    assert r.return_data == b"bad input: sum_f64 needs a multiple of 8 bytes (f64 LE values)"

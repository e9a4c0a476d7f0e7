"""ABI 1.1 cross-contract calls (engine/calls.py), rule by rule, on both host paths: the
call's price, the forwarded budget, statuses, state joining, reads seen across frames,
context, depth and reentrancy; the differential test over random call trees is in
tests/engine/test_call_trees.py."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from config import load_settings
from engine import Result, WasmEngine
from engine.abi import (
    CALL_DENIED,
    CALL_NOT_FOUND,
    CALL_OK,
    CALL_OUT_OF_FEE,
    CALL_REVERTED,
    CALL_TRAPPED,
)
from tests.support import TEST_FEES
from tests.support.contracts import Chain, check_fee, close_engine, module

# proxy.fwd: input = u32 addr_len ‖ addr ‖ u32 fn_len ‖ fn ‖ i64 fee ‖ call input. Writes
# "before", calls, writes "after"; returns u32 status ‖ the call's result.
PROXY = module("""
  (func (export "fwd") (local $n i32) (local $al i32) (local $fp i32) (local $fl i32)
    (local $ip i32) (local $st i32) (local $rs i32)
    (local.set $n (call $input_size))
    (call $input_read (i32.const 0))
    (local.set $al (i32.load (i32.const 0)))
    (local.set $fp (i32.add (i32.const 8) (local.get $al)))
    (local.set $fl (i32.load (i32.sub (local.get $fp) (i32.const 4))))
    (local.set $ip (i32.add (i32.add (local.get $fp) (local.get $fl)) (i32.const 8)))
    (call $storage_write (i32.const 0x9000) (i32.const 6) (i32.const 0x9000) (i32.const 6))
    (local.set $st (call $call (i32.const 4) (local.get $al) (local.get $fp) (local.get $fl)
                         (local.get $ip) (i32.sub (local.get $n) (local.get $ip))
                         (i64.load (i32.sub (local.get $ip) (i32.const 8)))))
    (call $storage_write (i32.const 0x9010) (i32.const 5) (i32.const 0x9010) (i32.const 5))
    (i32.store (i32.const 0x8000) (local.get $st))
    (local.set $rs (call $result_size))
    (call $result_read (i32.const 0x8004))
    (call $return_data (i32.const 0x8000) (i32.add (local.get $rs) (i32.const 4))))
  (data (i32.const 0x9000) "before")
  (data (i32.const 0x9010) "after")
""")

# bank: a callee with one entry point per outcome.
BANK = module("""
  (func (export "init"))
  (func (export "put") (local $n i32)
    (local.set $n (call $input_size))
    (call $input_read (i32.const 64))
    (call $storage_write (i32.const 0) (i32.const 1) (i32.const 64) (local.get $n))
    (call $emit_event (i32.const 8) (i32.const 3) (i32.const 64) (local.get $n))
    (call $return_data (i32.const 16) (i32.const 6)))
  (func (export "get") (local $n i32)
    (local.set $n (call $storage_read (i32.const 0) (i32.const 1) (i32.const 64)
                                      (i32.const 1000)))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then (call $return_data (i32.const 24) (i32.const 4)))
      (else (call $return_data (i32.const 64) (local.get $n)))))
  (func (export "fail")
    (call $storage_write (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 6))
    (call $revert (i32.const 32) (i32.const 2)))
  (func (export "trap")
    (call $storage_write (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 6))
    unreachable)
  (func (export "spin") (loop $l (br $l)))
  (func (export "del") (call $storage_remove (i32.const 0) (i32.const 1)))
  (func (export "readfail")
    (drop (call $storage_read (i32.const 0) (i32.const 1) (i32.const 64) (i32.const 8)))
    (call $revert (i32.const 32) (i32.const 2)))
  (func (export "whoami")
    (call $return_data (i32.const 128) (call $caller (i32.const 128))))
  (func (export "reenter") (local $st i32)
    (local.set $st (call $call (i32.const 40) (i32.const 5) (i32.const 48) (i32.const 3)
                         (i32.const 0) (i32.const 0) (i64.const 0)))
    (i32.store (i32.const 200) (local.get $st))
    (call $return_data (i32.const 200) (i32.const 4)))
  (data (i32.const 0) "k")
  (data (i32.const 8) "put")
  (data (i32.const 16) "stored")
  (data (i32.const 24) "none")
  (data (i32.const 32) "no")
  (data (i32.const 40) "proxy")
  (data (i32.const 48) "fwd")
""")
# twice.run: input = a value; calls bank.put(value), then bank.get, and returns what the
# second call read (the first one's write, which joined already).
TWICE = module("""
  (func (export "run") (local $n i32)
    (local.set $n (call $input_size))
    (call $input_read (i32.const 256))
    (drop (call $call (i32.const 0) (i32.const 4) (i32.const 8) (i32.const 3)
                (i32.const 256) (local.get $n) (i64.const 0)))
    (drop (call $call (i32.const 0) (i32.const 4) (i32.const 16) (i32.const 3)
                (i32.const 0) (i32.const 0) (i64.const 0)))
    (call $result_read (i32.const 512))
    (call $return_data (i32.const 512) (call $result_size)))
  (data (i32.const 0) "bank")
  (data (i32.const 8) "put")
  (data (i32.const 16) "get")
""")
# gone.run: calls bank.del, then bank.get; returns what the second call read.
GONE = TWICE.replace('"put")', '"del")')
# relay.go: input = the addresses still to visit, comma-separated; calls the first with
# the rest; returns u32 status ‖ the result (or "end" when none is left).
RELAY = module("""
  (func (export "go") (local $n i32) (local $i i32) (local $st i32) (local $rs i32)
    (local.set $n (call $input_size))
    (call $input_read (i32.const 256))
    (if (i32.eqz (local.get $n)) (then (call $return_data (i32.const 0) (i32.const 3))
                                       (return)))
    (block $found (loop $scan
      (br_if $found (i32.ge_u (local.get $i) (local.get $n)))
      (br_if $found (i32.eq (i32.load8_u (i32.add (i32.const 256) (local.get $i)))
                            (i32.const 44)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (local.set $rs (select (i32.sub (i32.sub (local.get $n) (local.get $i)) (i32.const 1))
                           (i32.const 0) (i32.lt_u (local.get $i) (local.get $n))))
    (local.set $st (call $call (i32.const 256) (local.get $i) (i32.const 8) (i32.const 2)
                         (i32.add (i32.add (i32.const 256) (local.get $i)) (i32.const 1))
                         (local.get $rs) (i64.const 0)))
    (i32.store (i32.const 0x4000) (local.get $st))
    (local.set $rs (call $result_size))
    (call $result_read (i32.const 0x4004))
    (call $return_data (i32.const 0x4000) (i32.add (local.get $rs) (i32.const 4))))
  (data (i32.const 0) "end")
  (data (i32.const 8) "go")
""")


@pytest.fixture(params=[True, False], ids=["raw", "public"])
def chain(request: pytest.FixtureRequest, engines: dict[bool, WasmEngine]) -> Chain:
    c = Chain(engines[request.param])
    c.deploy("proxy", PROXY)
    c.deploy("bank", BANK)
    c.deploy("twice", TWICE)
    c.deploy("gone", GONE)
    for i in range(1, 10):
        c.deploy(f"r{i}", RELAY)
    return c


def fwd_input(address: str, function: str, data: bytes = b"", fee: int = 0) -> bytes:
    """proxy.fwd's input for a call of `function` of `address`."""
    return (struct.pack("<I", len(address)) + address.encode()
            + struct.pack("<I", len(function)) + function.encode()
            + struct.pack("<q", fee) + data)


def fwd(chain: Chain, address: str, function: str, data: bytes = b"", fee: int = 0,
        **kw: object) -> tuple[Result, int, bytes]:
    """proxy.fwd -> (the transaction's Result, the call's status, the call's result)."""
    payload = fwd_input(address, function, data, fee)
    r = chain.run("proxy", "fwd", payload, **kw)  # type: ignore[arg-type]
    check_fee(r)
    if r.status != "ok":
        return r, -1, b""
    return r, struct.unpack("<I", r.return_data[:4])[0], r.return_data[4:]


def test_ok_joins_the_callees_writes_and_events_keyed_by_contract(chain: Chain) -> None:
    r, status, out = fwd(chain, "bank", "put", b"v1")
    assert (status, out) == (CALL_OK, b"stored")
    assert r.write_set == {b"before": b"before", b"after": b"after"}
    assert r.call_write_sets == {"bank": {b"k": b"v1"}}
    assert r.call_events == [("bank", b"put", b"v1")]
    assert r.call_read_sets == {}
    wire = r.to_json()
    assert wire["calls"]["write_sets"] == {"bank": {b"k".hex(): b"v1".hex()}}


def test_failures_discard_the_callees_writes_and_the_caller_goes_on(chain: Chain) -> None:
    for function, expected, out in (("fail", CALL_REVERTED, b"no"), ("trap", CALL_TRAPPED, b""),
                                    ("spin", CALL_OUT_OF_FEE, b"")):
        r, status, result = fwd(chain, "bank", function, fee=2_000_000)
        assert (status, result) == (expected, out), function
        assert r.call_write_sets == {} and r.call_events == []
        assert r.write_set == {b"before": b"before", b"after": b"after"}  # the caller went on
    # on OUT_OF_FEE exactly the forwarded budget is used (against a call that runs nothing)
    spun, _, _ = fwd(chain, "bank", "spin", fee=2_000_000)
    none, _, _ = fwd(chain, "bank", "nope", fee=2_000_000)
    assert spun.fee.used - none.fee.used == 2_000_000


def test_not_found_and_init_and_a_bad_name(chain: Chain) -> None:
    for address, function in (("nobody", "put"), ("bank", "nothing"), ("bank", "init"),
                              ("bank", "\xff")):
        r, status, out = fwd(chain, address, function)
        assert (status, out) == (CALL_NOT_FOUND, b""), (address, function)
        assert r.call_read_sets == {} and r.call_write_sets == {}


def test_reentrancy_is_denied_and_the_caller_inside_the_callee_is_the_contract(
    chain: Chain,
) -> None:
    _, status, out = fwd(chain, "bank", "reenter")
    assert status == CALL_OK and struct.unpack("<I", out)[0] == CALL_DENIED
    _, status, out = fwd(chain, "bank", "whoami", caller="alice")
    assert (status, out) == (CALL_OK, b"proxy")


def test_depth_stops_at_eight_frames(chain: Chain) -> None:
    path = b",".join(f"r{i}".encode() for i in range(2, 10))  # r1 -> r2 -> ... -> r9
    r = chain.run("r1", "go", path)
    assert r.status == "ok", r.error
    statuses, data = [], r.return_data
    while len(data) >= 4 and data[:3] != b"end":
        statuses.append(struct.unpack("<I", data[:4])[0])
        data = data[4:]
    # frames r1..r8 run (8 on the stack: 7 calls); r8's call to r9 is refused
    assert statuses == [CALL_OK] * 7 + [CALL_DENIED] and data == b""


def test_reads_see_joined_writes_and_join_the_read_set_whatever_the_outcome(
    chain: Chain,
) -> None:
    chain.state.apply("bank", {b"k": b"committed"})
    _, status, out = fwd(chain, "bank", "get")
    assert (status, out) == (CALL_OK, b"committed")
    r, status, _ = fwd(chain, "bank", "fail", fee=5_000_000)
    assert status == CALL_REVERTED and r.call_read_sets == {}
    # a frame that reads and then fails: its reads still join (the outcome depended on them)
    r, status, out = fwd(chain, "bank", "readfail")
    assert (status, out) == (CALL_REVERTED, b"no")
    assert r.call_read_sets == {"bank": {b"k": 1}} and r.call_write_sets == {}
    # a later frame reads what an earlier one wrote and joined, in the same transaction
    r = chain.run("twice", "run", b"fresh")
    assert r.status == "ok" and r.return_data == b"fresh"
    assert r.call_write_sets == {"bank": {b"k": b"fresh"}}
    assert r.call_read_sets == {"bank": {b"k": 1}}  # the committed version it shadows


def test_the_call_is_charged_first_and_the_callee_priced_like_any_execution(
    chain: Chain,
) -> None:
    r0, _, _ = fwd(chain, "bank", "nothing")  # NOT_FOUND: only the call's own price
    r1, _, _ = fwd(chain, "bank", "get")
    assert r0.fee.breakdown["calls"] == TEST_FEES["call"] + TEST_FEES["call_byte"] * (4 + 7)
    callee = chain.run("bank", "get")  # the same execution on its own
    extra = r1.fee.used - r0.fee.used
    assert extra >= callee.fee.used - 1_000  # (the proxy's own steps differ a little)
    # a budget too small for the callee's instantiation: OUT_OF_FEE, exactly the budget
    r2, status, _ = fwd(chain, "bank", "get", fee=3)
    assert status == CALL_OUT_OF_FEE
    shorter = len("get") - len("nothing")  # the call's name, read in and priced per byte
    per_byte = TEST_FEES["call_byte"] + TEST_FEES["byte_in"]
    assert r2.fee.used - r0.fee.used == 3 + per_byte * shorter


def test_a_key_an_earlier_frame_removed_reads_at_its_committed_version(chain: Chain) -> None:
    """Seen absent (the removal joined), validated as what the state holds: recorded as
    version 0 it would be stale at every commit, and the block could never commit."""
    chain.state.apply("bank", {b"k": b"there"})
    r = chain.run("gone", "run")
    assert r.status == "ok" and r.return_data == b"none"
    assert r.call_write_sets == {"bank": {b"k": None}}
    assert r.call_read_sets == {"bank": {b"k": 1}}


def test_an_i64_fee_keeps_all_its_bits_on_both_paths(chain: Chain) -> None:
    """2^32 + 7 cut to its low 32 bits is 7, too little to bring the callee in: the call
    succeeds only if every bit arrives (burning 2^32 units would race the deadline)."""
    r, status, out = fwd(chain, "bank", "get", fee=(1 << 32) + 7, fee_limit=10**10)
    assert (status, out) == (CALL_OK, b"none")
    cut, status, _ = fwd(chain, "bank", "get", fee=7, fee_limit=10**10)
    assert status == CALL_OUT_OF_FEE and cut.fee.used < r.fee.used


def test_a_fee_above_what_is_left_forwards_what_is_left(chain: Chain) -> None:
    spun, status, _ = fwd(chain, "bank", "spin", fee=2**62, fee_limit=3_000_000)
    assert status == -1 and spun.status == "out_of_fee"  # the callee took it all
    assert spun.fee.used == 3_000_000


def test_view_mode_makes_view_calls(chain: Chain) -> None:
    _, status, _ = fwd(chain, "bank", "put", b"v", mode="view")
    assert status == -1  # the proxy's own write traps first in view mode
    r = chain.run("r1", "go", b"r2", mode="view")
    assert r.status == "ok" and r.return_data[:4] == struct.pack("<I", CALL_OK)


def test_a_failed_transaction_keeps_nothing_of_any_frame(chain: Chain) -> None:
    r = chain.run("proxy", "fwd", b"\xff\xff\xff\x7f")  # reads past memory: traps
    assert r.status == "trap" and r.call_write_sets == {} and r.write_set == {}


@pytest.mark.parametrize("raw_path", [True, False], ids=["raw", "public"])
def test_a_known_callee_is_refused_before_loading_with_the_same_result(
    raw_path: bool, cache_dir: Path
) -> None:
    """The loader remembers what it loaded: a call that cannot pay to bring its callee in,
    or names no entry point, is decided without loading it -- and ends exactly as it
    does the first time, when the callee had to be loaded to find out."""
    c = Chain.start(load_settings(cache_dir=cache_dir), raw_calls=raw_path)
    try:
        c.deploy("proxy", PROXY)
        c.deploy("bank", BANK)
        for function, fee in (("get", 3), ("nothing", 0), ("get", 0)):
            first, _, _ = fwd(c, "bank", function, fee=fee)
            again, _, _ = fwd(c, "bank", function, fee=fee)
            assert _without_ids(first) == _without_ids(again), function
        assert c.engine.loader.known("bank", c.codes) is not None
    finally:
        close_engine(c.engine)



@pytest.mark.parametrize("raw_path", [True, False], ids=["raw", "public"])
def test_a_callee_that_cannot_be_paid_for_is_not_compiled_for_the_call(
    raw_path: bool, cache_dir: Path
) -> None:
    """Bringing a callee in is priced by its size: a call forwarding less than that ends
    as it would with the callee compiled, without compiling it."""
    from tests.support import TEST_FEES

    settings = load_settings(cache_dir=cache_dir, fees={**TEST_FEES, "module_byte": 2})
    c = Chain.start(settings, raw_calls=raw_path)
    try:
        c.deploy("proxy", PROXY)
        c.deploy("bank", BANK)
        cold, status, _ = fwd(c, "bank", "get", fee=3)
        assert status == CALL_OUT_OF_FEE
        assert c.engine.get_metrics()["cache"]["compiled"] == 1  # the proxy alone
        assert fwd(c, "bank", "get", fee=0)[1] == CALL_OK  # all that is left: compiled
        warm, _, _ = fwd(c, "bank", "get", fee=3)
        assert _without_ids(cold) == _without_ids(warm)
    finally:
        close_engine(c.engine)

def _without_ids(r: Result) -> bytes:
    r.tx_id = ""
    return r.consensus_bytes()


# deep.go: input = u32 caller depth ‖ u32 callee depth ‖ callee address: recurses the
# first deep, then (at the bottom) calls the callee's go with (second, 0), which
# recurses that deep; returns the call's status (u32) when it made one.
DEEP = module("""
  (global $len (mut i32) (i32.const 0))
  (func $rec (param $d i32) (param $x i64) (result i64)
    (if (result i64) (i32.eqz (local.get $d))
      (then (call $bottom) (i64.const 0))
      (else (i64.add (call $rec (i32.sub (local.get $d) (i32.const 1))
                                (i64.add (local.get $x) (i64.const 1))) (local.get $x)))))
  (func $bottom (local $st i32)
    (if (i32.le_u (global.get $len) (i32.const 8)) (then (return)))
    (i32.store (i32.const 0x7ffc) (i32.load (i32.const 260)))  ;; the callee's depth
    (i32.store (i32.const 0x8000) (i32.const 0))
    (local.set $st (call $call (i32.const 264) (i32.sub (global.get $len) (i32.const 8))
                         (i32.const 0) (i32.const 2) (i32.const 0x7ffc) (i32.const 8)
                         (i64.const 0)))
    (i32.store (i32.const 0x9000) (local.get $st))
    (call $return_data (i32.const 0x9000) (i32.const 4)))
  (func (export "go")
    (global.set $len (call $input_size))
    (call $input_read (i32.const 256))
    (drop (call $rec (i32.load (i32.const 256)) (i64.const 0))))
  (data (i32.const 0) "go")
""")


def test_a_callee_has_the_whole_wasm_stack_whatever_its_caller_used(
    engines: dict[bool, WasmEngine],
) -> None:
    """The deepest recursion a callee survives is the same whatever its caller's own
    depth and on both host paths, its code the caller's or not (each frame's Store is
    entered afresh): stack room that depended on the frames below it would fork nodes
    on a deep callee."""
    limits = {}
    for raw_path, engine in engines.items():
        c = Chain(engine)
        c.deploy("deep", DEEP)
        c.deploy("leaf", DEEP)  # the same code: a Store of its own, too

        def callee_ok(caller_depth: int, depth: int, c: Chain = c) -> bool:
            r = c.run("deep", "go", struct.pack("<II", caller_depth, depth) + b"leaf",
                      fee_limit=10**11, timeout_ms=20_000)
            assert r.status == "ok", r.error
            return r.return_data == struct.pack("<I", CALL_OK)

        lo, hi = 0, 40_000
        while lo < hi:  # the deepest recursion a callee of a shallow caller survives
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if callee_ok(0, mid) else (lo, mid - 1)
        limits[raw_path] = lo
        for caller_depth in (1, 3_000):
            assert callee_ok(caller_depth, lo) and not callee_ok(caller_depth, lo + 1)
    assert limits[True] == limits[False] > 1_000

"""Fuel that tracks time and the prices of bringing code in and unwinding it: loop, branch
and call fuel from the instrumentation, memory charged when it grows, a per-call hash
price, the module's size, traps and their frames, distinct reads -- on both host paths."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from config import FeePrices, PolicyLimits, load_settings
from engine.instrument import Metering, instrument, leb, padding
from engine.policy import check_module
from tests.support import TEST_FEES
from tests.support.contracts import Chain, u64

M = '(memory (export "memory") 1)'
LOOP = f"""(module (import "wes" "input_read" (func $ir (param i32))) {M}
  (func $nothing)
  ;; input: n (u32): n iterations, each with one br_if, one call, a load and a divide
  (func (export "run") (local $n i32) (call $ir (i32.const 0))
    (local.set $n (i32.load (i32.const 0)))
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (call $nothing)
      (drop (i32.div_u (local.get $n) (i32.load (i32.const 0))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))))"""


def _chain(cache_dir: Path, raw_calls: bool, **prices: int) -> Chain:
    settings = load_settings(cache_dir=cache_dir, fees={**TEST_FEES, **prices})
    return Chain.start(settings, raw_calls=raw_calls)


@pytest.fixture(params=[True, False], ids=["raw", "public"])
def raw_calls(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def _instructions(chain: Chain, contract: str, fn: str, data: bytes = b"") -> int:
    r = chain.run(contract, fn, data)
    assert r.status == "ok", r.error
    return r.fee.breakdown["instructions"]


def test_loop_branch_call_load_and_divide_fuel_are_charged_per_execution_of_them(
        tmp_path: Path, raw_calls: bool) -> None:
    plain = _chain(tmp_path / "a", raw_calls)
    metered = _chain(tmp_path / "b", raw_calls, loop_fuel=7, branch_fuel=5, call_fuel=11,
                     load_fuel=3, divide_fuel=2)
    try:
        for chain in (plain, metered):
            chain.deploy("c", LOOP)
        for n in (0, 1, 10, 100):
            extra = (_instructions(metered, "c", "run", u64(n))
                     - _instructions(plain, "c", "run", u64(n)))
            # loop headers: n + 1 entries; br_if: n + 1; functions entered: n + 1 (`run`
            # itself); loads: n + 1; divides: n
            assert extra == 7 * (n + 1) + 5 * (n + 1) + 11 * (n + 1) + 3 * (n + 1) + 2 * n
    finally:
        plain.close()
        metered.close()


def test_a_bare_loop_at_the_largest_fee_limit_ends_out_of_fee_not_in_a_timeout(
        tmp_path: Path, raw_calls: bool) -> None:
    shipped = load_settings(cache_dir=tmp_path, fees=FeePrices(), limits=PolicyLimits())
    chain = Chain.start(shipped, raw_calls=raw_calls)
    try:
        chain.deploy("spin", f'(module {M} (func (export "run") (loop $l (br $l))))')
        limit = chain.engine.limits.max_fee_limit
        r = chain.run("spin", "run", fee_limit=limit, timeout_ms=chain.engine.limits
                      .max_timeout_ms)
        assert r.status == "out_of_fee" and r.fee.used == limit
    finally:
        chain.close()


def test_a_fee_limit_that_could_outlast_its_timeout_is_invalid(tmp_path: Path) -> None:
    limits = PolicyLimits()
    chain = Chain.start(load_settings(cache_dir=tmp_path, fees=FeePrices(), limits=limits))
    try:
        chain.deploy("spin", f'(module {M} (func (export "run") (loop $l (br $l))))')
        per_ms = limits.max_fee_per_timeout_ms
        r = chain.run("spin", "run", fee_limit=10 * per_ms + 1, timeout_ms=10)
        assert r.status == "invalid" and r.error is not None and r.fee.used == 0
        assert r.error["kind"] == "fee_limit_outlasts_timeout" and "10 ms" in r.error["message"]
        assert chain.run("spin", "run", fee_limit=10 * per_ms, timeout_ms=10).status == \
            "out_of_fee"
    finally:
        chain.close()


def _fuel_of_body(code: bytes) -> int:
    """Fuel one call of a function `f` whose body (after its locals) is `code`."""
    body = b"\x00" + code + b"\x0b"  # no locals, the code, end
    code = (b"\x00asm\x01\x00\x00\x00"
            + b"\x01\x04\x01\x60\x00\x00"  # type 0: () -> ()
            + b"\x03\x02\x01\x00"  # one function of type 0
            + b"\x07\x05\x01\x01f\x00\x00"  # export "f"
            + b"\x0a" + leb(len(body) + len(leb(len(body))) + 1) + b"\x01"
            + leb(len(body)) + body)
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_fuel(1_000)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, code), [])
    instance.exports(store)["f"](store)
    return 1_000 - store.get_fuel()


@pytest.mark.parametrize("fuel", [1, 2, 9, 40])
def test_the_padding_is_stack_neutral_and_costs_exactly_its_fuel(fuel: int) -> None:
    assert _fuel_of_body(padding(fuel)) - _fuel_of_body(b"") == fuel


def test_instrumented_calls_exports_and_tables_still_reach_the_same_functions(
        tmp_path: Path, raw_calls: bool) -> None:
    wat = f"""(module
      (import "wes" "return_data" (func $rd (param i32 i32)))
      (import "wes" "input_size" (func $is (result i32)))
      {M} (table 3 funcref) (elem (i32.const 0) $seven $eight $nine)
      (type $n (func (result i32)))
      (func $seven (result i32) (i32.const 7))
      (func $eight (result i32) (i32.const 8))
      (func $nine (result i32) (i32.const 9))
      (func (export "pick")
        (i32.store (i32.const 0) (call_indirect (type $n) (call $is)))
        (i32.store (i32.const 4) (call $eight))
        (call $rd (i32.const 0) (i32.const 8))))"""
    chain = _chain(tmp_path, raw_calls, call_fuel=3)
    try:
        chain.deploy("t", wat)
        for size, want in ((0, 7), (1, 8), (2, 9)):
            r = chain.run("t", "pick", b"x" * size)
            assert r.status == "ok", r.error
            assert r.return_data == want.to_bytes(4, "little") + (8).to_bytes(4, "little")
        assert chain.run("t", "pick", b"xyz").status == "trap"  # past the table: a trap
    finally:
        chain.close()


GROW = f"""(module (import "wes" "return_data" (func $rd (param i32 i32)))
  (import "wes" "input_read" (func $ir (param i32))) {M}
  ;; input: pages (u32); grows, then touches the last grown byte; returns grow's result
  (func (export "grow") (local $old i32) (call $ir (i32.const 0))
    (local.set $old (memory.grow (i32.load (i32.const 0))))
    (if (i32.ge_s (local.get $old) (i32.const 0))
      (then (i32.store8 (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1))
                        (i32.const 1))))
    (i32.store (i32.const 0) (local.get $old))
    (call $rd (i32.const 0) (i32.const 4))))"""


def test_memory_is_charged_when_it_grows_before_a_page_is_touched(
        tmp_path: Path, raw_calls: bool) -> None:
    chain = _chain(tmp_path, raw_calls)
    try:
        chain.deploy("g", GROW)
        ok = chain.run("g", "grow", (10).to_bytes(4, "little"))
        assert ok.status == "ok" and ok.return_data == (1).to_bytes(4, "little")
        assert ok.fee.breakdown["memory"] == (1 + 10) * TEST_FEES["memory_page"]  # 1 initial
        # a budget that cannot pay for the pages: out of fee at the grow, charged the rest
        short = chain.run("g", "grow", (200).to_bytes(4, "little"), fee_limit=500_000)
        assert short.status == "out_of_fee" and short.fee.used == 500_000
        assert short.error is not None and "memory.grow" in short.error["message"]
        # past the page limit: -1, nothing grown, nothing charged for memory
        past = chain.run("g", "grow", (256).to_bytes(4, "little"))
        assert past.status == "ok" and past.return_data == b"\xff\xff\xff\xff"
        assert past.fee.breakdown["memory"] == TEST_FEES["memory_page"]  # the initial page
    finally:
        chain.close()


HASHES = f"""(module (import "wes" "sha256" (func $sha (param i32 i32 i32)))
  (import "wes" "keccak256" (func $kec (param i32 i32 i32))) {M}
  (func (export "zero") (call $sha (i32.const 0) (i32.const 0) (i32.const 64))
    (call $kec (i32.const 0) (i32.const 0) (i32.const 64))))"""


def test_a_hash_of_nothing_still_pays_the_hash_price(tmp_path: Path, raw_calls: bool) -> None:
    chain = _chain(tmp_path, raw_calls, hash=3_000)
    try:
        chain.deploy("h", HASHES)
        r = chain.run("h", "zero")
        assert r.status == "ok" and r.fee.breakdown["hashing"] == 2 * 3_000
    finally:
        chain.close()


def test_bringing_the_module_in_is_priced_by_its_size_warm_or_cold(
        tmp_path: Path, raw_calls: bool) -> None:
    chain = _chain(tmp_path, raw_calls, module_byte=2)
    try:
        code = bytes(wasmtime.wat2wasm(f'(module {M} (func (export "f")))'))
        chain.deploy("m", code)
        first, second = chain.run("m", "f"), chain.run("m", "f")
        assert first.fee.breakdown["execution"] == second.fee.breakdown["execution"]
        assert first.fee.breakdown["execution"] == TEST_FEES["execution"] + 2 * len(code)
    finally:
        chain.close()



def test_a_job_that_cannot_pay_to_bring_its_module_in_never_compiles_it(
        tmp_path: Path, raw_calls: bool) -> None:
    """Compiling on a host that has no artifact came before the first charge: a fee of 1
    bought up to the whole compile budget. The verdict is the one the compiled module
    gives; the compile waits for a job that can pay."""
    chain = _chain(tmp_path, raw_calls, module_byte=2)
    try:
        code = bytes(wasmtime.wat2wasm(f'(module {M} (func (export "f")))'))
        chain.deploy("m", code)
        short = 2 * len(code) - 1  # bringing it in costs 2 a byte (execution: 0)

        def verdicts() -> list[tuple[str, int, Any]]:
            runs = [chain.run("m", "f", fee_limit=short), chain.run("m", "nope", fee_limit=1)]
            return [(r.status, r.fee.used, r.error) for r in runs]

        cold = verdicts()
        assert [status for status, _, _ in cold] == ["out_of_fee", "invalid"]
        assert chain.run("m", "nope", fee_limit=10**9).status == "invalid"  # paid, no entry
        assert chain.engine.get_metrics()["cache"]["compiled"] == 0
        assert chain.run("m", "f").status == "ok"  # can pay: compiled
        assert chain.engine.get_metrics()["cache"]["compiled"] == 1
        assert verdicts() == cold
    finally:
        chain.close()

RECURSE = f"""(module (import "wes" "input_read" (func $ir (param i32)))
  (import "wes" "revert" (func $rv (param i32 i32))) {M}
  (func $down (param i32) (if (i32.eqz (local.get 0)) (then unreachable))
    (call $down (i32.sub (local.get 0) (i32.const 1))))
  (func $revert_down (param i32) (if (i32.eqz (local.get 0))
    (then (call $rv (i32.const 0) (i32.const 0))))
    (call $revert_down (i32.sub (local.get 0) (i32.const 1))))
  (func (export "trap") (call $ir (i32.const 0)) (call $down (i32.load (i32.const 0))))
  (func (export "revert") (call $ir (i32.const 0)) (call $revert_down (i32.load (i32.const 0))))
  (func (export "fine")))"""


@pytest.mark.parametrize("fn", ["trap", "revert"])
def test_unwinding_pays_a_trap_price_and_one_per_frame(tmp_path: Path, raw_calls: bool,
                                                       fn: str) -> None:
    chain = _chain(tmp_path, raw_calls, trap=1_000, trap_frame=10)
    try:
        chain.deploy("r", RECURSE)
        for depth in (0, 5, 500):
            r = chain.run("r", fn, depth.to_bytes(4, "little"))
            assert r.status == ("trap" if fn == "trap" else "reverted"), r.error
            frames = depth + 1 + (fn == "revert")  # $down calls, plus the host call of revert
            assert r.fee.breakdown["execution"] == TEST_FEES["execution"] + 1_000 + 10 * frames
        assert chain.run("r", "fine").fee.breakdown["execution"] == TEST_FEES["execution"]
    finally:
        chain.close()


@pytest.mark.parametrize("shape", ["calls", "tables", "grows", "plain"])
def test_instrumentation_is_deterministic_and_validates(shape: str) -> None:
    body = {
        "calls": '(func $a) (func (export "f") (call $a) (call $a))',
        "tables": '(table 1 funcref) (elem (i32.const 0) $a) (func $a) (type $t (func)) '
                  '(func (export "f") (call_indirect (type $t) (i32.const 0)))',
        "grows": '(func (export "f") (drop (memory.grow (i32.const 1))))',
        "plain": '(func (export "f"))',
    }[shape]
    code = bytes(wasmtime.wat2wasm(f"(module {M} {body})"))
    check_module(code, load_settings().limits)
    once = instrument(code, Metering(3, 2, 5))
    assert once == instrument(code, Metering(3, 2, 5))
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    wasmtime.Module(wasmtime.Engine(cfg), once)  # compiles: the rewrite is valid wasm


@pytest.fixture()
def reader_chain(tmp_path: Path, raw_calls: bool) -> Iterator[Chain]:
    chain = _chain(tmp_path, raw_calls, storage_read_key=700)
    yield chain
    chain.close()


def test_a_distinct_key_read_from_state_is_charged_once(reader_chain: Chain) -> None:
    from tests.support.contracts import PROBE

    chain: Any = reader_chain
    chain.deploy("probe", PROBE)
    key = (64).to_bytes(4, "little") + b"key1"
    base = chain.run("probe", "read", key).fee.breakdown["storage_read"]
    base_price = TEST_FEES["storage_read"] + 4 * TEST_FEES["storage_read_byte"]
    assert base == base_price + 700  # absent key: one new read-set entry


GROW_THEN_LOOP = """(module (import "wes" "fee_left" (func $fee_left (result i64)))
  (memory (export "memory") 1 300)
  (func (export "run") (local $i i32)
    (drop (memory.grow (i32.const 100)))
    (local.set $i (i32.const %d))
    (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i)))
    (drop (call $fee_left))))"""


def test_a_host_charge_lowers_the_fuel_wasm_may_still_burn(tmp_path: Path, raw_calls: bool) -> None:
    """Fuel is granted once, as the whole budget: a host charge (here 100 pages) left it
    granted, so wasm could run up to twice what its fee pays for before the next host
    call found the fee gone. Now the fuel is lowered after the charge and wasm runs out
    inside the loop: the fee runs out by one fuel unit, not by the whole loop."""
    chain = _chain(tmp_path, raw_calls)
    try:
        small, n = 1_000, 200_000
        chain.deploy("small", GROW_THEN_LOOP % small)
        chain.deploy("big", GROW_THEN_LOOP % n)
        probe = chain.run("small", "run", fee_limit=10**9)
        assert probe.status == "ok", probe.error
        grow, per_pass = probe.fee.used, probe.fee.breakdown["instructions"] / small
        loop = int(n * per_pass)
        # the loop fits in the fuel first granted, not in what the pages leave of it
        limit = grow + loop * 3 // 4
        assert loop <= limit // TEST_FEES["instruction"]
        r = chain.run("big", "run", fee_limit=limit)
        assert r.status == "out_of_fee" and r.error is not None
        needs, left = (int(x) for x in re.findall(r"\d+", r.error["message"])[:2])
        assert needs == left + 1, r.error["message"]
    finally:
        chain.close()


STRAIGHT = "(drop (i32.add (i32.const 1) (i32.const 2)))" * 100
EXACT = f"""(module (import "wes" "fee_left" (func $fee_left (result i64)))
  (memory (export "memory") 1 2)
  (func (export "straight") {STRAIGHT})
  (func (export "host_then_straight") (drop (call $fee_left)) {STRAIGHT})
  (func (export "host_then_loop") (local $i i32) (drop (call $fee_left)) {STRAIGHT}
    (local.set $i (i32.const 3))
    (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i)))))"""


@pytest.mark.parametrize("fn", ["straight", "host_then_straight", "host_then_loop"])
@pytest.mark.parametrize("instruction", [1, 3])
def test_a_fee_limit_runs_exactly_what_it_pays_for(tmp_path: Path, raw_calls: bool, fn: str,
                                                   instruction: int) -> None:
    """wasmtime traps once the fuel used reaches the grant and sees a run past it only at
    a loop header or a call: granting exactly what the fee buys let straight code run past
    it and end `ok` charged the limit, and made a paid-for loop trap. One more unit of
    fuel makes `ok` exactly the limits that cover what the run uses."""
    chain = _chain(tmp_path, raw_calls, instruction=instruction)
    try:
        chain.deploy("x", EXACT)
        used = chain.run("x", fn, fee_limit=10**8).fee.used
        for limit in range(used - 2 * instruction - 1, used + 2 * instruction + 2):
            r = chain.run("x", fn, fee_limit=limit)
            assert (r.status, r.fee.used) == (("ok", used) if limit >= used else
                                              ("out_of_fee", limit)), limit
    finally:
        chain.close()

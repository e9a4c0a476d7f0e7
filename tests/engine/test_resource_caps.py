"""Deterministic resource caps and the outcomes that must not depend on the machine:
write-set and read-set caps trap naming the limit, on both host paths; instantiation with
passive element segments; the fingerprint covers every price, limit and denial."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_settings
from engine.compiler import fingerprint
from tests.support import TEST_FEES
from tests.support.contracts import Chain, u64

CAPS = """(module
  (import "wes" "input_read" (func $ir (param i32)))
  (import "wes" "storage_write" (func $sw (param i32 i32 i32 i32)))
  (import "wes" "storage_read" (func $sr (param i32 i32 i32 i32) (result i32)))
  (import "wes" "storage_remove" (func $rm (param i32 i32)))
  (memory (export "memory") 2)
  ;; input: n (u32), value length (u32): writes keys 0..n-1 (4-byte keys), each a value
  (func (export "write") (local $i i32) (call $ir (i32.const 0))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 0))))
      (i32.store (i32.const 16) (local.get $i))
      (call $sw (i32.const 16) (i32.const 4) (i32.const 1024) (i32.load (i32.const 4)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))
  ;; the same key n times: overwrites do not grow the write set
  (func (export "overwrite") (local $i i32) (call $ir (i32.const 0))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 0))))
      (call $sw (i32.const 16) (i32.const 4) (i32.const 1024) (i32.load (i32.const 4)))
      (call $rm (i32.const 16) (i32.const 4))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))
  ;; reads keys 0..n-1 (absent): n read-set entries; then re-reads key 0 n times
  (func (export "read") (local $i i32) (call $ir (i32.const 0))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 0))))
      (i32.store (i32.const 16) (local.get $i))
      (drop (call $sr (i32.const 16) (i32.const 4) (i32.const 2048) (i32.const 0)))
      (i32.store (i32.const 16) (i32.const 0))
      (drop (call $sr (i32.const 16) (i32.const 4) (i32.const 2048) (i32.const 0)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))))"""

LIMITS = {"max_write_entries": 10, "max_write_bytes": 1_000, "max_read_entries": 20}


@pytest.fixture(params=[True, False], ids=["raw", "public"])
def chain(request: pytest.FixtureRequest, cache_dir: Path) -> Iterator[Chain]:
    c = Chain.start(load_settings(cache_dir=cache_dir, limits=LIMITS), raw_calls=request.param)
    c.deploy("caps", CAPS)
    yield c
    c.close()


def _args(n: int, size: int = 0) -> bytes:
    return n.to_bytes(4, "little") + size.to_bytes(4, "little")


def test_write_entries_are_capped(chain: Chain) -> None:
    assert chain.run("caps", "write", _args(10)).status == "ok"
    r = chain.run("caps", "write", _args(11))
    assert r.status == "trap" and r.error is not None
    assert "over 10 keys written (max_write_entries)" in r.error["message"]
    assert r.write_set == {}


def test_write_bytes_are_capped_counting_keys_and_values(chain: Chain) -> None:
    assert chain.run("caps", "write", _args(10, 96)).status == "ok"  # 10 × (4 + 96) = 1,000
    r = chain.run("caps", "write", _args(10, 97))
    assert r.status == "trap" and r.error is not None
    assert "over 1000 bytes written (max_write_bytes)" in r.error["message"]


def test_overwriting_one_key_stays_within_the_caps(chain: Chain) -> None:
    r = chain.run("caps", "overwrite", _args(100, 900))
    assert r.status == "ok", r.error
    assert r.write_set == {b"\x00\x00\x00\x00": None}


def test_read_entries_are_capped_and_rereads_are_free_of_the_cap(chain: Chain) -> None:
    ok = chain.run("caps", "read", _args(20))
    assert ok.status == "ok" and len(ok.read_set) == 20
    r = chain.run("caps", "read", _args(21))
    assert r.status == "trap" and r.error is not None
    assert "over 20 distinct keys read (max_read_entries)" in r.error["message"]


PASSIVE = """(module (import "wes" "return_data" (func $rd (param i32 i32)))
  (memory (export "memory") 1)
  (table 2 funcref) (elem func $seven)
  (func $seven (result i32) (i32.const 7))
  (func (export "run") (table.init 0 (i32.const 0) (i32.const 0) (i32.const 1))
    (i32.store (i32.const 0) (call_indirect (result i32) (i32.const 0)))
    (call $rd (i32.const 0) (i32.const 4))))"""


def test_a_passive_element_segment_instantiates_and_pays_for_it(chain: Chain) -> None:
    chain.deploy("passive", PASSIVE)
    first, second = chain.run("passive", "run"), chain.run("passive", "run")
    assert first.status == "ok", first.error
    assert first.return_data == (7).to_bytes(4, "little")
    assert first.fee == second.fee  # what instantiation took, charged alike each time


def test_an_out_of_bounds_segment_traps_with_its_own_cause(chain: Chain) -> None:
    chain.deploy("oob", '(module (memory (export "memory") 1) (data (i32.const 65535) "xy") '
                        '(func (export "run")))')
    r = chain.run("oob", "run")
    assert r.status == "trap" and r.error is not None
    assert "fuel" not in r.error["message"] and "out of bounds" in r.error["message"]


def test_the_fingerprint_covers_every_price_limit_and_denial(cache_dir: Path) -> None:
    base = load_settings(cache_dir=cache_dir)
    same_label = {**TEST_FEES, "hash_byte": TEST_FEES["hash_byte"] + 1}
    others = [
        load_settings(cache_dir=cache_dir, fees=same_label),
        load_settings(cache_dir=cache_dir, limits={"max_write_entries": 5}),
        load_settings(cache_dir=cache_dir, denied_capabilities={"x": ["crypto"]}),
        load_settings(cache_dir=cache_dir, fees={**TEST_FEES, "loop_fuel": 9}),
    ]
    prints = {fingerprint(s) for s in [base, *others]}
    assert len(prints) == 5
    assert fingerprint(load_settings(cache_dir=cache_dir / "elsewhere")) == fingerprint(base)


def test_counter_state_survives_a_denied_init(chain: Chain) -> None:
    from tests.support.contracts import example

    chain.deploy("counter", example("counter"))
    chain.run("counter", "init", deploy=True, commit=True)
    chain.run("counter", "incr", commit=True)
    assert chain.run("counter", "init").status == "invalid"
    assert chain.run("counter", "get").return_data == u64(1)


GROW = """(module
  (import "wes" "return_data" (func $rd (param i32 i32)))
  (memory (export "memory") 1 3)
  ;; memory.grow by 5 (past the declared maximum of 3), then by 2 (to it): both results
  (func (export "run")
    (i32.store (i32.const 0) (memory.grow (i32.const 5)))
    (i32.store (i32.const 4) (memory.grow (i32.const 2)))
    (call $rd (i32.const 0) (i32.const 8))))"""


@pytest.mark.parametrize("raw_calls", [True, False], ids=["raw", "public"])
def test_growing_past_the_declared_maximum_fails_as_in_wasm_and_is_not_charged(
        cache_dir: Path, raw_calls: bool) -> None:
    fees = {**TEST_FEES, "memory_page": 1_000}
    chain = Chain.start(load_settings(cache_dir=cache_dir, fees=fees), raw_calls=raw_calls)
    try:
        chain.deploy("grow", GROW)
        r = chain.run("grow", "run")
        assert r.status == "ok", r.error
        assert r.return_data == (2**32 - 1).to_bytes(4, "little") + (1).to_bytes(4, "little")
        assert r.fee.breakdown["memory"] == 3 * 1_000  # the pages it has, not the 6 it asked
    finally:
        chain.close()

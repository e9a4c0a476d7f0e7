"""Deploy-time policy: `rejected` for every module ABI 1 does not allow, naming the thing
and the limit; the features ABI 1 does allow still run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config import Settings, load_settings
from engine import Rejected, WasmEngine
from tests.support.contracts import Chain, example, wasm

M = '(memory (export "memory") 1)'
F = '(func (export "f"))'

# name -> (WAT, error kind, a piece of the message)
REJECTED: dict[str, tuple[str, str, str]] = {
    "env import": (f'(module (import "env" "abort" (func)) {M})', "import", "env.abort"),
    "unknown wes function": (f'(module (import "wes" "launch" (func)) {M})', "import",
                             "wes.launch"),
    "a call of the wrong type": (
        f'(module (import "wes" "call" (func (param i32 i32 i32 i32 i32 i32 i32) '
        f"(result i32))) {M})", "import", "wes.call has the wrong type"),
    "wrong import type": (f'(module (import "wes" "input_size" (func (result i64))) {M})',
                          "import", "wrong type"),
    "wrong import arity": (f'(module (import "wes" "return_data" (func (param i32))) {M})',
                           "import", "wes.return_data"),
    "imported memory": ('(module (import "wes" "memory" (memory 1)) (export "memory" '
                        '(memory 0)))', "import", "wes.memory"),
    "imported global": (f'(module (import "wes" "g" (global i32)) {M})', "import", "wes.g"),
    "start function": (f"(module {M} (func $s) (start $s))", "start", "start function"),
    "reserved export name": (f'(module {M} (global (export "__wes_depth") i32 (i32.const 0)))',
                             "export", "'__wes_depth'"),
    "memory not exported": ("(module (memory 1) (func (export \"f\")))", "memory", "'memory'"),
    "no memory": (f"(module {F})", "memory", "0 memories"),
    "memory exported under another name": ('(module (memory (export "mem") 1))', "memory",
                                           "'memory'"),
    "v128 local": (f'(module {M} (func (export "f") (local v128)))', "feature", "SIMD"),
    "v128 param": (f"(module {M} (func $g (param v128)) {F})", "feature", "0x7b"),
    "v128 global": (f"(module {M} (global v128 (v128.const i64x2 0 0)))", "feature", "0x7b"),
    "simd instruction": (f'(module {M} (func (export "f") (drop (i32x4.extract_lane 0 '
                         "(v128.const i32x4 1 2 3 4)))))", "feature", "SIMD"),
    "relaxed simd": (f'(module {M} (func (export "f") (drop (i32x4.relaxed_laneselect '
                     "(v128.const i64x2 0 0) (v128.const i64x2 0 0) (v128.const i64x2 0 0)))))",
                     "feature", "SIMD"),
    "shared memory": ('(module (memory (export "memory") 1 1 shared))', "feature", "shared"),
    "atomics": (f'(module {M} (func (export "f") (drop (i32.atomic.load (i32.const 0)))))',
                "feature", "threads"),
    "memory64": ('(module (memory (export "memory") i64 1))', "feature", "memory64"),
    "multi-memory": ('(module (memory (export "memory") 1) (memory 1))', "memory",
                     "2 memories"),
    "too many initial pages": ('(module (memory (export "memory") 257))', "limit",
                               "257 pages, limit 256"),
    "externref table": (f"(module {M} (table 1 externref))", "feature", "reference types"),
    "funcref global": (f"(module {M} (global funcref (ref.null func)))", "feature", "0x70"),
    "ref.null instruction": (f'(module {M} (func (export "f") (drop (ref.null func))))',
                             "feature", "reference types"),
    "element expressions": (f"(module {M} (table 1 funcref) (func $g) "
                            "(elem (i32.const 0) funcref (ref.func $g)))", "feature",
                            "reference types"),
    "tail call": (f'(module {M} (func $g) (func (export "f") (return_call $g)))', "feature",
                  "tail call"),
    "exceptions": (f'(module {M} (tag $t) (func (export "f") (throw $t)))', "feature",
                   "section id 13"),
    "extended const": (f"(module {M} (global i32 (i32.add (i32.const 1) (i32.const 2))))",
                       "feature", "extended-const"),
}

ALLOWED = {
    "bulk memory": f'(module {M} (func (export "f") (memory.fill (i32.const 0) (i32.const 0) '
                   "(i32.const 10))))",
    "multi-value": f"(module {M} (func $g (result i32 i32) i32.const 1 i32.const 2) "
                   '(func (export "f") (drop (drop (call $g)))))',
    "sign extension": f'(module {M} (func (export "f") (drop (i32.extend8_s (i32.const 1)))))',
    "non-trapping float-to-int": f'(module {M} (func (export "f") (drop (i32.trunc_sat_f32_s '
                                 "(f32.const 1e20)))))",
    "mutable global export": f'(module {M} (global (export "g") (mut i32) (i32.const 0)) {F})',
    "funcref table": f"(module {M} (table 2 funcref) (func $g) (elem (i32.const 0) $g) "
                     '(func (export "f") (call_indirect (i32.const 0))))',
    "floats": f'(module {M} (func (export "f") (drop (f64.sqrt (f64.const 2)))))',
}


@pytest.fixture()
def chain(settings: Settings) -> Iterator[Chain]:
    c = Chain.start(settings)
    yield c
    c.close()


def _limited(cache_dir: Path, **limits: int) -> Chain:
    return Chain.start(load_settings(cache_dir=cache_dir, limits=limits))


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected(chain: Chain, name: str) -> None:
    wat, kind, piece = REJECTED[name]
    chain.deploy("c", wat)
    r = chain.run("c", "f")
    assert r.status == "rejected", r.error
    assert r.error is not None and r.error["kind"] == kind
    assert piece in r.error["message"]
    assert r.fee.used == 0 and r.write_set == {}
    assert chain.engine.get_metrics()["by_status"] == {"rejected": 1}


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_allowed_features_run(chain: Chain, name: str) -> None:
    chain.deploy("c", ALLOWED[name])
    r = chain.run("c", "f")
    assert r.status == "ok", r.error


def test_exported_helpers_with_a_signature_are_not_entry_points(chain: Chain) -> None:
    chain.deploy("c", f'(module {M} (func (export "add") (param i32 i32) (result i32) '
                      '(i32.add (local.get 0) (local.get 1))) (func (export "f")))')
    assert chain.engine.validate(wasm(f'(module {M} (func (export "h") (param i32)) {F})')
                                 ).entry_points == ("f",)
    assert chain.run("c", "f").status == "ok"
    r = chain.run("c", "add")
    assert r.status == "invalid" and r.error is not None
    assert r.error["kind"] == "unknown_function" and "'add'" in r.error["message"]


def test_a_declared_maximum_above_the_limit_is_accepted_and_growth_stops_at_it(
        chain: Chain) -> None:
    # emscripten's shape: (memory 256 32768); the store's limit (256 pages here) bounds growth
    chain.deploy("c", '''(module (import "wes" "return_data" (func $rd (param i32 i32)))
      (memory (export "memory") 1 32768)
      (func (export "f") (i32.store (i32.const 0) (memory.grow (i32.const 255)))
        (i32.store (i32.const 4) (memory.grow (i32.const 1)))
        (call $rd (i32.const 0) (i32.const 8))))''')
    r = chain.run("c", "f")
    assert r.status == "ok", r.error
    assert r.return_data == (1).to_bytes(4, "little") + (0xFFFFFFFF).to_bytes(4, "little")


def test_two_tables_are_rejected(chain: Chain) -> None:
    chain.deploy("c", f"(module {M} (table 1 funcref) (table 1 funcref))")
    assert chain.run("c", "f").status == "rejected"


def test_validate_raises_rejected(chain: Chain) -> None:
    with pytest.raises(Rejected, match="start function"):
        chain.engine.validate(wasm(REJECTED["start function"][0]))
    info = chain.engine.validate(example("token"))
    assert info.entry_points == ("balance_of", "mint", "total_supply", "transfer")


@pytest.mark.parametrize(("limits", "wat", "piece"), [
    ({"max_module_bytes": 100}, f"(module {M} {F} (data (i32.const 0) \"{'x' * 100}\"))",
     "limit 100"),
    ({"max_functions": 2}, f"(module {M} (func) (func) {F})", "3 functions, limit 2"),
    ({"max_locals_per_function": 3}, f'(module {M} (func (export "f") (local i32 i64 f32 f64)))',
     "4 locals, limit 3"),
    ({"max_globals": 1}, f"(module {M} (global i32 (i32.const 0)) (global i32 (i32.const 0)))",
     "2 globals, limit 1"),
    ({"max_data_bytes": 8}, f'(module {M} (data (i32.const 0) "0123456789"))',
     "10 bytes, limit 8"),
    ({"max_exports": 2}, f'(module {M} (func (export "a")) (func (export "b")))',
     "3 exports, limit 2"),
    ({"max_table_elements": 5}, f"(module {M} (table 6 funcref))", "6 elements, limit 5"),
    ({"max_memory_pages": 2}, '(module (memory (export "memory") 3))', "3 pages, limit 2"),
])
def test_configured_limits(cache_dir: Path, limits: dict[str, int], wat: str, piece: str) -> None:
    chain = _limited(cache_dir, **limits)
    try:
        chain.deploy("c", wat)
        r = chain.run("c", "f")
        assert r.status == "rejected", r.error
        assert r.error is not None and piece in r.error["message"]
    finally:
        chain.close()


def test_module_too_large_for_the_default_limit(chain: Chain) -> None:
    payload = b"\x01x" + b"\x00" * (8 * 1024 * 1024)
    custom = b"\x00" + _leb(len(payload)) + payload  # a custom section makes it too large
    big = wasm(f"(module {M} {F})")
    chain.deploy("c", big + custom)
    r = chain.run("c", "f")
    assert r.status == "rejected" and r.error is not None
    assert r.error["kind"] == "too_large" and "limit 8388608" in r.error["message"]


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_memory_grow_past_the_page_limit_returns_minus_one(cache_dir: Path) -> None:
    from tests.support.contracts import PROBE

    chain = _limited(cache_dir, max_memory_pages=3)
    try:
        chain.deploy("p", PROBE)
        ok = chain.run("p", "grow", (2).to_bytes(4, "little"))
        assert ok.status == "ok" and ok.return_data == (1).to_bytes(4, "little") + (3).to_bytes(
            4, "little")
        r = chain.run("p", "grow", (3).to_bytes(4, "little"))
        assert r.status == "ok"  # no trap
        assert r.return_data == (-1).to_bytes(4, "little", signed=True) + (1).to_bytes(4, "little")
        assert r.fee.breakdown["memory"] == ok.fee.breakdown["memory"] // 3
    finally:
        chain.close()


def test_stricter_limits_apply_to_cached_artifacts(cache_dir: Path) -> None:
    loose = Chain(WasmEngine(load_settings(cache_dir=cache_dir)))
    loose.deploy("c", example("counter"))
    assert loose.run("c", "get").status == "ok"
    loose.close()
    strict = _limited(cache_dir, max_module_bytes=100)
    try:
        strict.deploy("c", example("counter"))
        r = strict.run("c", "get")
        assert r.status == "rejected", (r.status, strict.engine.get_metrics()["cache"])
    finally:
        strict.close()


# A code section whose one body claims 100 bytes at the very end of the module.
TRUNCATED_BODY = (b"\x00asm\x01\x00\x00\x00" + b"\x01\x04\x01\x60\x00\x00" + b"\x03\x02\x01\x00"
                  + b"\x05\x03\x01\x00\x01" + b"\x07\x0a\x01\x06memory\x02\x00"
                  + b"\x0a\x02\x01\x64")


def test_function_body_past_the_end_is_invalid(chain: Chain) -> None:
    chain.deploy("c", TRUNCATED_BODY)
    r = chain.run("c", "f")
    assert r.status == "invalid", r.error
    assert r.error is not None and r.error["kind"] == "bad_module"


INSTANTIATION_TRAPS = {
    "data segment past memory": f'(module {M} {F} (data (i32.const 65535) "ab"))',
    "element segment past table": f"(module {M} {F} (table 1 funcref) (func $g) "
                                  "(elem (i32.const 5) $g))",
}


@pytest.mark.parametrize("name", sorted(INSTANTIATION_TRAPS))
def test_instantiation_traps_are_the_contracts_fault(chain: Chain, name: str) -> None:
    from tests.support.contracts import POOL, POOL_FRESH

    chain.deploy("bad", INSTANTIATION_TRAPS[name])
    chain.deploy("pool", POOL)
    assert chain.run("pool", "probe").return_data == POOL_FRESH
    chain.engine.refill()
    r = chain.run("bad", "f")
    assert r.status in ("trap", "invalid", "rejected"), r.error
    hits = chain.engine.get_metrics()["pool"]["hits"]
    assert chain.run("pool", "probe").return_data == POOL_FRESH
    assert chain.engine.get_metrics()["pool"]["hits"] == hits + 1  # still warm


def test_init_may_not_be_exported_under_a_second_name(chain: Chain) -> None:
    chain.deploy("c", f'(module {M} (func $i) (export "init" (func $i)) (export "again" '
                      '(func $i)))')
    r = chain.run("c", "again")
    assert r.status == "rejected" and r.error is not None
    assert "`init` is also exported as 'again'" in r.error["message"]

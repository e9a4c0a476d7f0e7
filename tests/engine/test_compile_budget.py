"""The compile budget and the wall behind it: compile bombs are `rejected` naming the limit,
fast, and nothing a module does to the compiler can take an engine down."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from config import load_settings
from engine import InvalidJob, Rejected, WasmEngine
from engine.compile_sandbox import CompileSandbox, CompileWall
from tests.support.contracts import Chain

M = '(memory (export "memory") 1)'


def nested_loops(locals_: int, loops: int) -> str:
    """The issue's first bomb: many locals, deeply nested loops with back edges, and the
    innermost body touching every local."""
    opens = "".join(f"(loop $l{i} " for i in range(loops))
    inner = " ".join(f"(local.set {j} (i64.add (local.get {j}) (i64.const 1)))"
                     for j in range(locals_))
    closes = "".join(f"(br_if $l{i} (i64.eqz (local.get 0))))" for i in reversed(range(loops)))
    decl = " ".join(["(local i64)"] * locals_)
    return f'(module {M} (func (export "run") {decl} {opens}{inner}{closes}))'


def data_segments(n: int) -> str:
    """The second bomb: thousands of one-byte data segments at out-of-bounds offsets."""
    segs = " ".join(f'(data (i32.const {70_000 + i}) "x")' for i in range(n))
    return f'(module {M} (func (export "run")) {segs})'


@pytest.fixture()
def engine(settings: object) -> WasmEngine:
    return WasmEngine(settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("wat", "limit"), [
    (nested_loops(2_048, 512), "max_locals_per_function"),
    (nested_loops(1_000, 512), "max_function_weight"),
    (nested_loops(200, 100), "max_loop_depth"),
    (data_segments(20_000), "max_data_segments"),
])
def test_the_two_bombs_are_rejected_naming_the_limit(engine: WasmEngine, wat: str,
                                                     limit: str) -> None:
    with pytest.raises(Rejected) as info:
        engine.validate(bytes(wasmtime.wat2wasm(wat)))
    assert limit in info.value.message or "locals, limit" in info.value.message


@pytest.mark.parametrize(("limits", "wat", "piece"), [
    ({"max_code_bytes": 50}, nested_loops(8, 4), "max_code_bytes (50)"),
    ({"max_function_bytes": 40}, nested_loops(8, 4), "max_function_bytes (40)"),
    ({"max_function_weight": 100}, nested_loops(8, 4), "max_function_weight (100)"),
    ({"max_module_weight": 80},
     f"(module {M} (func (local i64) (drop (i64.const 1)) (drop (i64.const 2))) "
     "(func (local i64 i64) (drop (i64.const 1)) (drop (i64.const 2))) "
     '(func (export "run") (local i64 i64 i64) (drop (i64.const 1)) (drop (i64.const 2))))',
     "max_module_weight (80)"),
    ({"max_loop_depth": 3}, nested_loops(1, 4), "loop nesting is 4"),
    ({"max_element_segments": 1},
     f"(module {M} (table 2 funcref) (func $f) (elem (i32.const 0) $f) (elem (i32.const 1) $f) "
     '(func (export "run")))', "max_element_segments (1)"),
])
def test_each_budget_limit_is_named(cache_dir: Path, limits: dict[str, int], wat: str,
                                    piece: str) -> None:
    chain = Chain.start(load_settings(cache_dir=cache_dir, limits=limits))
    try:
        chain.deploy("c", wat)
        r = chain.run("c", "run")
        assert r.status == "rejected", r.error
        assert r.error is not None and r.error["kind"] == "compile_budget"
        assert piece in r.error["message"]
    finally:
        chain.close()


def test_loops_side_by_side_are_not_nested(cache_dir: Path) -> None:
    chain = Chain.start(load_settings(cache_dir=cache_dir, limits={"max_loop_depth": 2}))
    try:
        loops = " ".join("(loop (loop (nop)))" for _ in range(10))
        chain.deploy("c", f'(module {M} (func (export "run") {loops}))')
        assert chain.run("c", "run").status == "ok"
    finally:
        chain.close()


@pytest.mark.integration
def test_a_bomb_past_a_loosened_budget_hits_the_wall_and_the_engine_carries_on(
        cache_dir: Path) -> None:
    loose = {"max_locals_per_function": 4_096, "max_function_weight": 10**9,
             "max_module_weight": 10**9, "max_loop_depth": 1_000}
    settings = load_settings(cache_dir=cache_dir, limits=loose, compile_timeout_ms=1_000)
    chain = Chain.start(settings)
    try:
        chain.deploy("bomb", nested_loops(2_048, 512))
        with pytest.raises(CompileWall, match="compile wall"):
            chain.engine.validate(chain.codes.modules[chain.codes.addresses["bomb"]])
        r = chain.run("bomb", "run")  # a job: this machine's trouble, not a verdict
        assert r.status == "error" and r.error is not None
        assert "compile wall" in r.error["message"] and r.fee.used == 0
        chain.deploy("fine", f'(module {M} (func (export "run")))')
        assert chain.run("fine", "run").status == "ok"  # a fresh compile child serves
    finally:
        chain.close()


@pytest.mark.integration
def test_a_compiler_out_of_memory_kills_the_child_not_the_engine(cache_dir: Path) -> None:
    loose = {"max_locals_per_function": 4_096, "max_function_weight": 10**9,
             "max_module_weight": 10**9, "max_loop_depth": 1_000}
    settings = load_settings(cache_dir=cache_dir, limits=loose, compile_memory_mb=256,
                             compile_timeout_ms=60_000)
    sandbox = CompileSandbox.for_settings(settings)
    with pytest.raises(CompileWall, match="memory"):
        sandbox.compile(bytes(wasmtime.wat2wasm(nested_loops(2_048, 512))))
    good = bytes(wasmtime.wat2wasm(f'(module {M} (func (export "run")))'))
    assert sandbox.compile(good)  # and it compiles the next module


def block_params_bomb(values: int, depth: int) -> str:
    """No locals at all, but loops that take and leave `values` i64s each, nested deep:
    the compiler keeps every one of them live like a local."""
    vals = " ".join(["i64"] * values)
    opens = "".join(f"(loop $l{i} (param {vals}) (result {vals}) " for i in range(depth))
    closes = "".join(f"(br_if $l{i} (i32.const 0)))" for i in reversed(range(depth)))
    pushes = " ".join(["(i64.const 1)"] * values)
    drops = " ".join(["drop"] * values)
    return f'(module {M} (func (export "run") {pushes} {opens}{closes} {drops}))'


def test_values_a_block_takes_count_like_locals(engine: WasmEngine) -> None:
    with pytest.raises(Rejected, match="max_function_weight"):
        engine.validate(bytes(wasmtime.wat2wasm(block_params_bomb(1_000, 8))))
    engine.validate(bytes(wasmtime.wat2wasm(block_params_bomb(4, 8))))  # honest multi-value


def test_the_budget_counts_the_code_as_instrumented(cache_dir: Path) -> None:
    """A body of calls is 2 bytes a call as written and more once the call depth is
    counted around each: the budget sees what the compiler will."""
    calls = " ".join(["(call $f)"] * 1_000)
    wat = f'(module {M} (func $f) (func (export "run") {calls}))'
    limits = {"max_function_bytes": 4_000}  # 2,000-odd bytes as written
    chain = Chain.start(load_settings(cache_dir=cache_dir, limits=limits))
    try:
        with pytest.raises(Rejected, match=r"body \(instrumented\).*max_function_bytes"):
            chain.engine.validate(bytes(wasmtime.wat2wasm(wat)))
    finally:
        chain.close()


def test_indices_past_the_module_are_invalid_not_the_engines_own(engine: WasmEngine) -> None:
    """The instrumentation appends a global, a type and an import: code naming the index
    one past the module's own must not reach them."""
    past_global = f'(module {M} (func (export "run") (global.set 0 (i32.const -5))))'
    exported = f'(module {M} (func (export "run")) (export "d" (global 0)))'
    past_type = f'(module {M} (type (func)) (func (export "run") (block (type 1))))'
    for wat in (past_global, exported, past_type):
        with pytest.raises(InvalidJob, match="does not validate"):
            engine.validate(bytes(wasmtime.wat2wasm(wat)))

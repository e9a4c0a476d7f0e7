"""Figures of the fee and resource model: the compile budget and wall against the bombs, the
slowest module the budget lets through, and how long the largest fee limit can run.

`compile_bomb_ms`: the slower of the two hand-built compile bombs (2,048 locals in 512
nested loops; 20,000 out-of-bounds data segments), rejected by `validate` (policy,
budget, and the compile wall behind them). `compile_worst_ms`: the slowest of the
adversarial shapes sized right at the budget's limits (nested loops over every local,
if-chains, straight-line code), compiled through the wall. `tight_loop_max_fee_s`: a
bare loop at the largest fee limit, run to `out_of_fee`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import wasmtime

from bench.common import Report, rounded
from config import PolicyLimits, Settings
from engine import (
    Context,
    Job,
    MemoryCode,
    MemoryState,
    Rejected,
    WasmEngine,
    check_module,
)

BUDGET_KEYS = ("compile_bomb_ms", "compile_worst_ms", "tight_loop_max_fee_s")
M = '(memory (export "memory") 1)'


def _nested(locals_: int, loops: int, functions: int = 1) -> str:
    inner = " ".join(f"(local.set {j} (i64.add (local.get {j}) (i64.const 1)))"
                     for j in range(locals_))
    body = ("".join(f"(loop $l{i} " for i in range(loops)) + inner
            + "".join(f"(br_if $l{i} (i64.eqz (local.get 0))))" for i in reversed(range(loops))))
    decl = " ".join(["(local i64)"] * locals_)
    funcs = " ".join(f"(func {decl} {body})" for _ in range(functions))
    return f'(module {M} {funcs} (func (export "run")))'


def _ifs(locals_: int, ifs: int, functions: int = 1) -> str:
    body = " ".join(f"(if (i64.eqz (local.get {j % locals_})) (then (local.set {j % locals_} "
                    f"(i64.const {j}))))" for j in range(ifs))
    decl = " ".join(["(local i64)"] * locals_)
    funcs = " ".join(f"(func {decl} (loop $l {body} (br_if $l (i64.eqz (local.get 0)))))"
                     for _ in range(functions))
    return f'(module {M} {funcs} (func (export "run")))'


def _straight(functions: int, ops: int) -> str:
    body = " ".join(f"(local.set 0 (i64.add (local.get 0) (i64.const {k})))" for k in range(ops))
    funcs = " ".join(f"(func (local i64) {body})" for _ in range(functions))
    return f'(module {M} {funcs} (func (export "run")))'


def _segments(count: int) -> str:
    segs = " ".join(f'(data (i32.const {70_000 + i}) "x")' for i in range(count))
    return f'(module {M} (func (export "run")) {segs})'


BOMBS: dict[str, Callable[[], str]] = {
    "nested_loops": lambda: _nested(2_048, 512),
    "data_segments": lambda: _segments(20_000),
}


def _at_the_limits(limits: PolicyLimits) -> dict[str, str]:
    """Shapes sized right at the budget: as many functions of the largest weight as the
    module may hold, each with loops nested to the limit over as many locals as fit (or an
    if-chain filling the largest body), and the whole code section of straight-line code."""
    functions = max(1, limits.max_module_weight // limits.max_function_weight)
    depth = limits.max_loop_depth
    locals_ = limits.max_locals_per_function
    while locals_ > 1 and not _passes(_nested(locals_, depth), limits):
        locals_ = locals_ * 15 // 16
    body = limits.max_function_bytes
    if_locals = max(1, limits.max_function_weight // body - 1)
    return {
        "nested_loops_at_limit": _nested(locals_, depth, functions),
        "if_chains_at_limit": _ifs(if_locals, body // 23, functions),
        "straight_code_at_limit": _straight(limits.max_code_bytes // body, body // 12),
    }


def _passes(wat: str, limits: PolicyLimits) -> bool:
    try:
        check_module(bytes(wasmtime.wat2wasm(wat)), limits)
    except Rejected:
        return False
    return True


def _validate_ms(engine: WasmEngine, wat: str) -> tuple[float, str]:
    code = bytes(wasmtime.wat2wasm(wat))
    started = time.perf_counter()
    try:
        engine.validate(code)
        verdict = "accepted"
    except Rejected as exc:
        verdict = f"rejected: {exc.message[:80]}"
    return (time.perf_counter() - started) * 1e3, verdict


def budget_figures(rep: Report, settings: Settings) -> None:
    engine = WasmEngine(settings)
    try:
        bombs = {name: _validate_ms(engine, make()) for name, make in BOMBS.items()}
        for name, (ms, verdict) in bombs.items():
            rep.extra(f"compile_bomb_{name}_ms", rounded(ms))
            rep.progress(f"  {name}: {verdict}")
        rep.set("compile_bomb_ms", rounded(max(ms for ms, _ in bombs.values())),
                "the slower hand-built bomb, rejected")
        limits = {name: _validate_ms(engine, wat)
                  for name, wat in _at_the_limits(settings.limits).items()}
        for name, (ms, verdict) in limits.items():
            rep.extra(f"compile_{name}_ms", rounded(ms))
            rep.progress(f"  {name}: {verdict}")
        worst = max(limits, key=lambda n: limits[n][0])
        rep.set("compile_worst_ms", rounded(limits[worst][0]), f"{worst}: {limits[worst][1]}")
        seconds, status = _tight_loop(engine)
        rep.set("tight_loop_max_fee_s", rounded(seconds),
                f"ended {status} at max_fee_limit {settings.limits.max_fee_limit:,}; the "
                f"longest timeout {settings.limits.max_timeout_ms / 1000:g} s")
        if status != "out_of_fee":
            rep.note(f"a bare loop at the largest fee limit ended {status}, not out_of_fee")
    finally:
        engine.shutdown()


def _tight_loop(engine: WasmEngine) -> tuple[float, str]:
    codes = MemoryCode()
    codes.deploy("spin", bytes(wasmtime.wat2wasm(
        f'(module {M} (func (export "run") (loop $l (br $l))))')))
    job = Job("spin", "spin", "run", b"", engine.limits.max_fee_limit, Context("a"),
              timeout_ms=engine.limits.max_timeout_ms)
    engine.execute(job, MemoryState(), codes)  # compiled and warm
    started = time.perf_counter()
    result = engine.execute(job, MemoryState(), codes)
    return time.perf_counter() - started, result.status

"""engine._native (the C host functions) against engine/host.py (the reference), by program.

An interpreter contract runs a random program of host calls with random pointers,
lengths and memory growth (in bounds, at the edges, far outside) under random fee
limits and tight policy limits; the native and the public-API engine must give the
same consensus bytes (status, error message, fee and breakdown, outputs) every time.
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_settings
from engine import Context, Job, MemoryState, OutOfFee, WasmEngine, raw
from tests.support import TEST_FEES
from tests.support.contracts import Chain, check_fee, close_engine

ROOT = Path(__file__).resolve().parents[2]
TOKEN = ROOT / "examples" / "contracts" / "token" / "token.wasm"
needs_native = pytest.mark.skipif(raw.native is None, reason="engine._native is not built")

# (import name, params, result) in op order; the op after them grows memory, the next one
# returns `acc`.
CALLS = [
    ("input_size", 0, "i32"), ("input_read", 1, None), ("return_data", 2, None),
    ("revert", 2, None), ("log", 2, None), ("emit_event", 4, None),
    ("storage_read", 4, "i32"), ("storage_write", 4, None), ("storage_remove", 2, None),
    ("caller", 1, "i32"), ("self_address", 1, "i32"), ("block_height", 0, "i64"),
    ("block_time", 0, "i64"), ("fee_left", 0, "i64"), ("sha256", 3, None),
    ("keccak256", 3, None), ("ed25519_verify", 4, "i32"), ("secp256k1_verify", 4, "i32"),
    ("secp256k1_recover", 4, "i32"),
]
# Which arguments of a call are pointers (the rest are lengths or numbers); default {0}.
POINTERS = {"emit_event": {0, 2}, "storage_read": {0, 2}, "storage_write": {0, 2},
            "sha256": {0, 2}, "keccak256": {0, 2}, "ed25519_verify": {0, 1, 3},
            "secp256k1_verify": {0, 1, 2}, "secp256k1_recover": {0, 1, 3}}
ARGS = ("$a", "$b", "$c", "$d")
PROGRAM_AT = 65_536  # the program is copied to page 1; records are op u8 + 4 × u32 LE


def _interpreter_wat() -> str:
    imports = "\n".join(
        f'  (import "wes" "{name}" (func ${name} (param{" i32" * n})'
        + (f" (result {res})" if res else "") + "))"
        for name, n, res in CALLS
    )
    bodies = []
    for name, n, res in CALLS:
        call = f"(call ${name}{''.join(f' (local.get {a})' for a in ARGS[:n])})"
        if res == "i32":
            call = f"(global.set $acc (i64.add (global.get $acc) (i64.extend_i32_u {call})))"
        elif res == "i64":
            call = f"(global.set $acc (i64.add (global.get $acc) {call}))"
        bodies.append(call)
    bodies.append("(drop (memory.grow (i32.rem_u (local.get $a) (i32.const 4))))")
    bodies.append("(i64.store (i32.const 0) (global.get $acc))"
                  "(call $return_data (i32.const 0) (i32.const 8))")
    # Nested blocks: br_table jumps to the end of block k, where op k's body follows.
    dispatch = ("(br_table " + " ".join(f"$op{k}" for k in range(len(bodies)))
                + " $skip (local.get $op))")
    nested = dispatch
    for k, body in enumerate(bodies):
        nested = f"(block $op{k} {nested}) {body} (br $next)"
    return f"""
(module
{imports}
  (memory (export "memory") 2 8)
  (global $acc (mut i64) (i64.const 0))
  (func (export "run")
    (local $p i32) (local $end i32) (local $op i32)
    (local $a i32) (local $b i32) (local $c i32) (local $d i32)
    (local.set $end (i32.add (i32.const {PROGRAM_AT}) (call $input_size)))
    (call $input_read (i32.const {PROGRAM_AT}))
    (local.set $p (i32.const {PROGRAM_AT}))
    (block $done (loop $next
      (br_if $done (i32.gt_u (i32.add (local.get $p) (i32.const 17)) (local.get $end)))
      (local.set $op (i32.load8_u (local.get $p)))
      (local.set $a (i32.load (i32.add (local.get $p) (i32.const 1))))
      (local.set $b (i32.load (i32.add (local.get $p) (i32.const 5))))
      (local.set $c (i32.load (i32.add (local.get $p) (i32.const 9))))
      (local.set $d (i32.load (i32.add (local.get $p) (i32.const 13))))
      (local.set $p (i32.add (local.get $p) (i32.const 17)))
      (block $skip {nested})
      (br $next)))))
"""


def _pointer(rng: random.Random) -> int:
    if rng.random() < 0.85:
        return rng.randrange(0, 512)
    return rng.choice([
        rng.randrange(0, 131_072), 131_072 - rng.randrange(0, 40),
        PROGRAM_AT + rng.randrange(0, 64), 196_608 - rng.randrange(0, 40),
        0xFFFF_FFFF - rng.randrange(0, 40), 0x8000_0000,
    ])


def _length(rng: random.Random) -> int:
    if rng.random() < 0.85:
        return rng.randrange(0, 20)
    return rng.choice([
        rng.randrange(0, 40), rng.randrange(60, 70), rng.randrange(0, 70_000),
        0xFFFF_FFFF - rng.randrange(0, 3),
    ])


def _program(rng: random.Random) -> bytes:
    out = b""
    for _ in range(rng.randrange(1, 14)):
        op = rng.randrange(0, len(CALLS) + 2)
        pointers = POINTERS.get(CALLS[op][0], {0}) if op < len(CALLS) else {0}
        args = [_pointer(rng) if i in pointers else _length(rng) for i in range(4)]
        out += struct.pack("<BIIII", op, *args)
    return out


# The suite's schedule, and one with an execution price and free pages (grown past).
SCHEDULES = {"test": {}, "free-pages": {"execution": 777, "memory_free_pages": 3}}


@pytest.fixture(scope="module", params=list(SCHEDULES))
def pair(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Chain]]:
    limits = {"max_logs": 3, "max_log_bytes": 8, "max_events": 3, "max_event_topic_bytes": 8,
              "max_event_data_bytes": 16, "max_key_bytes": 16, "max_value_bytes": 64,
              "max_return_bytes": 32}
    fees = {**TEST_FEES, **SCHEDULES[request.param]}
    settings = load_settings(cache_dir=Path(tmp_path_factory.mktemp("cache")), limits=limits,
                             fees=fees)
    chains = [Chain(WasmEngine(settings, raw_calls=raw)) for raw in (True, False)]
    for chain in chains:
        chain.deploy("interp", _interpreter_wat())
    yield chains
    for chain in chains:
        close_engine(chain.engine)


@pytest.mark.integration
def test_without_the_native_module_the_public_path_serves(tmp_path: Path) -> None:
    code = f"""
import logging, sys, struct
logging.basicConfig(level=logging.WARNING)
sys.modules["engine._native"] = None  # as if the C compiler had been missing at install
from pathlib import Path
from config import load_settings
from engine import Context, Job, MemoryCode, MemoryState, WasmEngine
engine = WasmEngine(load_settings(cache_dir=Path({str(tmp_path)!r})))
codes = MemoryCode()
codes.deploy("token", Path({str(TOKEN)!r}).read_bytes())
job = Job("t", "token", "mint", struct.pack("<Q", 5), 10**8, Context("a"))
r = engine.execute(job, MemoryState(), codes)
print(engine.raw_calls, r.status, r.fee.used > 0)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "ok", "True"]
    assert "engine._native is not built" in done.stderr


@needs_native
def test_random_host_call_programs_agree(pair: list[Chain]) -> None:
    rng = random.Random(20261130)
    state = MemoryState()
    state.apply("interp", {b"\0" * n: bytes([n]) * (n * 7) for n in range(1, 9)})
    statuses: dict[str, int] = {}
    for i in range(1500):
        program = _program(rng)
        limit = rng.choice([rng.randrange(1, 3_000), rng.randrange(1, 60_000),
                            rng.randrange(1, 2_000_000), 10_000_000])
        mode = "view" if rng.random() < 0.1 else "call"
        job = Job(f"p{i}", "interp", "run", program, limit,
                  Context(rng.choice(["alice", "", "c" * 64]), rng.randrange(-2**63, 2**63),
                          rng.randrange(0, 2**63)), mode)  # type: ignore[arg-type]
        native, public = (c.engine.execute(job, state, c.codes) for c in pair)
        check_fee(native)
        assert native.consensus_bytes() == public.consensus_bytes(), (i, program.hex(), limit)
        statuses[native.status] = statuses.get(native.status, 0) + 1
        if native.status == "ok" and rng.random() < 0.3:
            state.apply("interp", native.write_set)
    # the programs reach every outcome the host functions can produce
    assert {"ok", "reverted", "out_of_fee", "trap"} <= set(statuses), statuses


@needs_native
def test_a_broken_state_view_is_an_error_result_not_a_crash(pair: list[Chain]) -> None:
    class Broken:
        def get(self, contract: str, key: bytes) -> object:
            return ["not", "a", "pair"]

    program = struct.pack("<BIIII", 6, 0, 4, 100, 8)  # storage_read of 4 zero bytes
    for chain in pair:
        job = Job("b", "interp", "run", program, 1_000_000, Context("alice"))
        result = chain.engine.execute(job, Broken(), chain.codes)  # type: ignore[arg-type]
        assert result.status == "error" and result.fee.used == 0
        assert result.error is not None and "host function failed" in result.error["message"]


@needs_native
def test_native_meter_matches_the_fee_meter(pair: list[Chain]) -> None:
    host = pair[0].engine.host
    assert host is not None
    ex = host.execution(Job("m", "interp", "run", b"", 100, Context()), MemoryState(), 0)
    ex.consume(60, "storage_read", "wes.storage_read")
    assert (ex.used, ex.left, ex.breakdown["storage_read"]) == (60, 40, 60)
    with pytest.raises(OutOfFee, match=r"out of fee: wes\.log needs 41, 40 left"):
        ex.consume(41, "io_bytes", "wes.log")
    assert ex.used == ex.limit == 100 and sum(ex.breakdown.values()) == 100
    with pytest.raises(ValueError, match="unknown fee category"):
        ex.consume(1, "gas")

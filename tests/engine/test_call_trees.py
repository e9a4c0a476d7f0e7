"""Random call trees (ABI 1.1 `wes.call`) on both host paths: the same consensus bytes
(status, fee and breakdown, every frame's writes, events and reads) every time, and the
fee invariants hold. Each node contract interprets a program from its input; a call's
input is the callee's program, so one transaction's input is the whole tree."""

from __future__ import annotations

import random
import struct

import pytest

from engine import Context, Job, MemoryState, WasmEngine, raw
from tests.support.contracts import Chain, check_fee, module

needs_native = pytest.mark.skipif(raw.native is None, reason="engine._native is not built")
NODES = 5
# ops: 0 write k v | 1 read k | 2 emit t | 3 call node u16-fee-in-thousands u16-len prog
#      4 revert | 5 trap | 6 spin | 7 view-only read of the last call's result size
NODE = module("""
  (global $acc (mut i64) (i64.const 0))
  (func (export "run") (local $p i32) (local $end i32) (local $op i32) (local $n i32)
    (local $st i32)
    (local.set $end (i32.add (i32.const 4096) (call $input_size)))
    (call $input_read (i32.const 4096))
    (local.set $p (i32.const 4096))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $op (i32.load8_u (local.get $p)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (if (i32.eq (local.get $op) (i32.const 0)) (then
        (call $storage_write (local.get $p) (i32.const 1) (i32.add (local.get $p) (i32.const 1))
                             (i32.const 1))
        (local.set $p (i32.add (local.get $p) (i32.const 2)))))
      (if (i32.eq (local.get $op) (i32.const 1)) (then
        (global.set $acc (i64.add (global.get $acc) (i64.extend_i32_s
          (call $storage_read (local.get $p) (i32.const 1) (i32.const 0) (i32.const 8)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))))
      (if (i32.eq (local.get $op) (i32.const 2)) (then
        (call $emit_event (local.get $p) (i32.const 1) (i32.const 0) (i32.const 0))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))))
      (if (i32.eq (local.get $op) (i32.const 3)) (then
        (i32.store8 (i32.const 16) (i32.const 110))
        (i32.store8 (i32.const 17) (i32.add (i32.const 48) (i32.load8_u (local.get $p))))
        (local.set $n (i32.load16_u (i32.add (local.get $p) (i32.const 3))))
        (local.set $st (call $call (i32.const 16) (i32.const 2) (i32.const 24) (i32.const 3)
          (i32.add (local.get $p) (i32.const 5)) (local.get $n)
          (i64.mul (i64.extend_i32_u (i32.load16_u (i32.add (local.get $p) (i32.const 1))))
                   (i64.const 1000))))
        (global.set $acc (i64.add (i64.mul (global.get $acc) (i64.const 7))
                                  (i64.extend_i32_u (local.get $st))))
        (local.set $p (i32.add (i32.add (local.get $p) (i32.const 5)) (local.get $n)))))
      (if (i32.eq (local.get $op) (i32.const 4)) (then
        (call $revert (i32.const 32) (i32.const 4))))
      (if (i32.eq (local.get $op) (i32.const 5)) (then unreachable))
      (if (i32.eq (local.get $op) (i32.const 6)) (then (loop $spin (br $spin))))
      (if (i32.eq (local.get $op) (i32.const 7)) (then
        (global.set $acc (i64.add (global.get $acc)
                                  (i64.extend_i32_u (call $result_size))))))
      (br $next)))
    (i64.store (i32.const 40) (global.get $acc))
    (call $return_data (i32.const 40) (i32.const 8)))
  (data (i32.const 24) "run")
  (data (i32.const 32) "nope")
""")


def _program(rng: random.Random, depth: int) -> bytes:
    out = b""
    for _ in range(rng.randrange(1, 7)):
        op = rng.choices(range(8), weights=[5, 5, 3, 6 if depth < 5 else 0, 1, 1, 1, 2])[0]
        if op == 0:
            out += bytes([0, rng.randrange(97, 101), rng.randrange(256)])
        elif op in (1, 2):
            out += bytes([op, rng.randrange(97, 101)])
        elif op == 3:
            sub = _program(rng, depth + 1)
            fee = rng.choice([0, 0, 1, 5, 30, 200, 5_000])  # thousands of fee units
            out += bytes([3, rng.randrange(NODES)]) + struct.pack("<HH", fee, len(sub)) + sub
        else:
            out += bytes([op])
    return out


@pytest.fixture(scope="module")
def pair(engines: dict[bool, WasmEngine]) -> list[Chain]:
    chains = [Chain(engines[raw_path]) for raw_path in (True, False)]
    for chain in chains:
        for i in range(NODES):
            chain.deploy(f"n{i}", NODE)
    return chains


@needs_native
def test_random_call_trees_agree_on_both_host_paths(pair: list[Chain]) -> None:
    rng = random.Random(20261202)
    state = MemoryState()
    for i in range(NODES):
        state.apply(f"n{i}", {bytes([97 + k]): bytes([i, k]) for k in range(3)})
    seen: dict[str, int] = {}
    called = 0
    for i in range(400):
        program = _program(rng, 1)
        limit = rng.choice([rng.randrange(1, 40_000), rng.randrange(1, 400_000), 10_000_000])
        mode = "view" if rng.random() < 0.1 else "call"
        job = Job(f"t{i}", f"n{rng.randrange(NODES)}", "run", program, limit,
                  Context("alice", 5, 6), mode)  # type: ignore[arg-type]
        native, public = (c.engine.execute(job, state, c.codes) for c in pair)
        check_fee(native)
        assert native.consensus_bytes() == public.consensus_bytes(), (i, program.hex(), limit)
        seen[native.status] = seen.get(native.status, 0) + 1
        called += bool(native.call_read_sets or native.call_write_sets)
        if native.status == "ok":
            state.apply(job.contract, native.write_set)
            for contract, writes in native.call_write_sets.items():
                state.apply(contract, writes)
    assert {"ok", "reverted", "out_of_fee", "trap"} <= set(seen), seen
    assert called > 50  # the trees really call


@pytest.mark.parametrize("raw_path", [True, False], ids=["raw", "public"])
def test_the_limits_count_the_callers_output_and_what_joined_it(
    raw_path: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from config import load_settings
    from tests.support.contracts import close_engine

    settings = load_settings(cache_dir=tmp_path_factory.mktemp("lim"),
                             limits={"max_events": 1, "max_write_entries": 2})
    chain = Chain(WasmEngine(settings, raw_calls=raw_path))
    try:
        for i in range(NODES):
            chain.deploy(f"n{i}", NODE)

        def call(sub: bytes) -> bytes:
            return bytes([3, 1]) + struct.pack("<HH", 0, len(sub)) + sub

        # the caller emitted one event already: a callee's event would be the second
        r = chain.run("n0", "run", bytes([2, 97]) + call(bytes([2, 98])))
        assert r.status == "ok" and r.call_events == [] and r.events == [(b"a", b"")]
        assert r.return_data == struct.pack("<q", 3)  # the call counted as TRAPPED (3)
        # alone, the same callee's event joins
        r = chain.run("n0", "run", call(bytes([2, 98])))
        assert r.call_events == [("n1", b"b", b"")]
        # two writes of the caller's and one of the callee's: past max_write_entries
        r = chain.run("n0", "run", bytes([0, 97, 1, 0, 98, 2]) + call(bytes([0, 97, 3])))
        assert r.status == "ok" and r.call_write_sets == {} and len(r.write_set) == 2
        # the callee's writes joined first, the caller's own come after: the total is
        # still held to the limit, at the end
        r = chain.run("n0", "run", call(bytes([0, 97, 3, 0, 98, 4])) + bytes([0, 97, 1]))
        assert r.status == "trap" and r.error is not None
        assert r.error["kind"] == "limit" and "max_write_entries" in r.error["message"]
        assert r.call_write_sets == {} and r.write_set == {}
    finally:
        close_engine(chain.engine)

"""Small WAT test contracts for the engine suite, and a tiny harness to run them.

Every module is compiled at test time with `wasmtime.wat2wasm` (which does not
validate: the engine's policy and wasmtime's compiler do). Contracts that use the
host ABI import all of it through `ABI_IMPORTS`; unused imports are allowed.
"""

from __future__ import annotations

import functools
import gc
import struct
from pathlib import Path

import wasmtime

from config import Settings, load_settings
from engine import Context, Job, MemoryCode, MemoryState, Result, StateView, WasmEngine
from tests.support import contract_path

ABI_IMPORTS = """
  (import "wes" "input_size" (func $input_size (result i32)))
  (import "wes" "input_read" (func $input_read (param i32)))
  (import "wes" "return_data" (func $return_data (param i32 i32)))
  (import "wes" "revert" (func $revert (param i32 i32)))
  (import "wes" "log" (func $log (param i32 i32)))
  (import "wes" "emit_event" (func $emit_event (param i32 i32 i32 i32)))
  (import "wes" "storage_read" (func $storage_read (param i32 i32 i32 i32) (result i32)))
  (import "wes" "storage_write" (func $storage_write (param i32 i32 i32 i32)))
  (import "wes" "storage_remove" (func $storage_remove (param i32 i32)))
  (import "wes" "caller" (func $caller (param i32) (result i32)))
  (import "wes" "self_address" (func $self_address (param i32) (result i32)))
  (import "wes" "block_height" (func $block_height (result i64)))
  (import "wes" "block_time" (func $block_time (result i64)))
  (import "wes" "fee_left" (func $fee_left (result i64)))
  (import "wes" "sha256" (func $sha256 (param i32 i32 i32)))
  (import "wes" "keccak256" (func $keccak256 (param i32 i32 i32)))
  (import "wes" "ed25519_verify" (func $ed25519_verify (param i32 i32 i32 i32) (result i32)))
  (import "wes" "secp256k1_verify" (func $secp256k1_verify (param i32 i32 i32 i32) (result i32)))
  (import "wes" "secp256k1_recover"
    (func $secp256k1_recover (param i32 i32 i32 i32) (result i32)))
  (import "wes" "call" (func $call (param i32 i32 i32 i32 i32 i32 i64) (result i32)))
  (import "wes" "result_size" (func $result_size (result i32)))
  (import "wes" "result_read" (func $result_read (param i32)))
"""

MEMORY = '(memory (export "memory") 1)'


def wat_bytes(data: bytes) -> str:
    """Bytes as a WAT string literal body (every byte escaped)."""
    return "".join(f"\\{b:02x}" for b in data)


def module(body: str, memory: str = MEMORY, imports: bool = True) -> str:
    return f"(module {ABI_IMPORTS if imports else ''} {memory} {body})"


@functools.lru_cache(maxsize=256)
def wasm(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def example(name: str) -> bytes:
    return contract_path(name).read_bytes()


# -- PROBE: one entry point per ABI function ------------------------------------------
# Layout: 0 "key1" | 16 "value-one" | 32 "topic" | 48 "first" | 56 "second" | 64 "nope"
# | 1024 input | 2048 output scratch (4-byte result + 64-byte buffer for reads).
_READ_INPUT = "(local.set $n (call $input_size)) (call $input_read (i32.const 1024))"
PROBE = module(r"""
  (data (i32.const 0) "key1") (data (i32.const 16) "value-one") (data (i32.const 32) "topic")
  (data (i32.const 48) "first") (data (i32.const 56) "second") (data (i32.const 64) "nope")
  (func $write_key1
    (call $storage_write (i32.const 0) (i32.const 4) (i32.const 16) (i32.const 9)))
  (func $read_into (param $k i32) (param $klen i32) (param $cap i32)
    (i32.store (i32.const 2048)
      (call $storage_read (local.get $k) (local.get $klen) (i32.const 2052) (local.get $cap)))
    (call $return_data (i32.const 2048) (i32.const 68)))
  (func (export "echo") (local $n i32) READ
    (call $return_data (i32.const 1024) (local.get $n)))
  (func (export "last_wins")
    (call $return_data (i32.const 48) (i32.const 5))
    (call $return_data (i32.const 56) (i32.const 6)))
  (func (export "spam_log") (local $n i32) (local $i i32) READ
    (loop $l
      (call $log (i32.const 1024) (local.get $n))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10)))))
  (func (export "write_value") (local $n i32) READ
    (call $storage_write (i32.const 0) (i32.const 4) (i32.const 1024) (local.get $n)))
  ;; input = topic length (u32 LE) || bytes; emits it (topic = first len bytes, data = rest)
  ;; ten times
  (func (export "spam_event") (local $n i32) (local $t i32) (local $i i32) READ
    (local.set $t (i32.load (i32.const 1024)))
    (loop $l
      (call $emit_event (i32.const 1028) (local.get $t) (i32.add (i32.const 1028) (local.get $t))
        (i32.sub (i32.sub (local.get $n) (i32.const 4)) (local.get $t)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10)))))
  (func (export "event")
    (call $emit_event (i32.const 32) (i32.const 5) (i32.const 16) (i32.const 9)))
  ;; input = cap (u32 LE) || key; returns storage_read's result (i32 LE) || 64-byte buffer
  (func (export "read") (local $n i32) READ
    (call $read_into (i32.const 1028) (i32.sub (local.get $n) (i32.const 4))
      (i32.load (i32.const 1024))))
  (func (export "write") (call $write_key1))
  (func (export "write_then_read") (call $write_key1)
    (call $read_into (i32.const 0) (i32.const 4) (i32.const 64)))
  (func (export "remove") (call $storage_remove (i32.const 0) (i32.const 4)))
  (func (export "write_remove_read") (call $write_key1)
    (call $storage_remove (i32.const 0) (i32.const 4))
    (call $read_into (i32.const 0) (i32.const 4) (i32.const 64)))
  (func (export "write_key") (local $n i32) READ
    (call $storage_write (i32.const 1024) (local.get $n) (i32.const 16) (i32.const 9)))
  (func (export "read_key") (local $n i32) READ
    (call $read_into (i32.const 1024) (local.get $n) (i32.const 64)))
  (func (export "caller")
    (call $return_data (i32.const 2048) (call $caller (i32.const 2048))))
  (func (export "self_address")
    (call $return_data (i32.const 2048) (call $self_address (i32.const 2048))))
  (func (export "height") (i64.store (i32.const 2048) (call $block_height))
    (call $return_data (i32.const 2048) (i32.const 8)))
  (func (export "time") (i64.store (i32.const 2048) (call $block_time))
    (call $return_data (i32.const 2048) (i32.const 8)))
  (func (export "fee_left") (local $i i32)
    (i64.store (i32.const 2048) (call $fee_left))
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))
    (i64.store (i32.const 2056) (call $fee_left))
    (call $return_data (i32.const 2048) (i32.const 16)))
  (func (export "sha256") (local $n i32) READ
    (call $sha256 (i32.const 1024) (local.get $n) (i32.const 2048))
    (call $return_data (i32.const 2048) (i32.const 32)))
  (func (export "keccak256") (local $n i32) READ
    (call $keccak256 (i32.const 1024) (local.get $n) (i32.const 2048))
    (call $return_data (i32.const 2048) (i32.const 32)))
  ;; input = pages (i32 LE); returns memory.grow's result || memory.size (i32 LE each)
  (func (export "grow")
    (call $input_read (i32.const 1024))
    (i32.store (i32.const 2048) (memory.grow (i32.load (i32.const 1024))))
    (i32.store (i32.const 2052) (memory.size))
    (call $return_data (i32.const 2048) (i32.const 8)))
  (func (export "revert_after_write") (call $write_key1)
    (call $emit_event (i32.const 32) (i32.const 5) (i32.const 16) (i32.const 9))
    (call $revert (i32.const 64) (i32.const 4)))
  (func (export "spin_after_write") (call $write_key1)
    (call $emit_event (i32.const 32) (i32.const 5) (i32.const 16) (i32.const 9))
    (loop $l (br $l)))
  ;; hashes all 64 KiB of memory: out of fee inside the host call under a tight limit
  (func (export "hash_page_after_write") (call $write_key1)
    (call $sha256 (i32.const 0) (i32.const 65536) (i32.const 2048)))
  (func (export "return_oob") (call $return_data (i32.const 70000) (i32.const 8)))
  (func (export "return_wrap") (call $return_data (i32.const 0xfffffff0) (i32.const 0x20)))
  (func (export "input_oob") (call $input_read (i32.const 65534)))
""".replace("READ", _READ_INPUT))

# -- TRAPS: wasm-level failures, no host calls --------------------------------------
TRAPS = module("""
  (func (export "unreachable") unreachable)
  (func (export "div_zero") (drop (i32.div_u (i32.const 1) (i32.const 0))))
  (func (export "oob_load") (drop (i32.load (i32.const 70000))))
  (func $recurse (export "recurse") (call $recurse))
  (func (export "spin") (loop $l (br $l)))
  (func (export "nothing"))
  (func (export "work_then_trap") (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000))))
    unreachable)
  (func (export "grow_then_trap") (drop (memory.grow (i32.const 10))) unreachable)
  (func (export "work_then_return") (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000)))))
""", imports=False)

# -- NAN: NaN-producing float ops, results returned as raw bits ---------------------
NAN_OPERANDS = (
    struct.pack("<d", 0.0)  # 0
    + struct.pack("<d", -1.0)  # 8
    + struct.pack("<Q", 0x7FF4000000000001)  # 16 signalling NaN with a payload
    + struct.pack("<Q", 0xFFF8000000000123)  # 24 negative quiet NaN with a payload
    + struct.pack("<f", 0.0) + struct.pack("<f", -1.0)  # 32, 36
)
CANONICAL_F64 = struct.pack("<Q", 0x7FF8000000000000)
CANONICAL_F32 = struct.pack("<I", 0x7FC00000)


def _f64(name: str, expr: str) -> str:
    return (f'(func (export "{name}") (f64.store (i32.const 64) {expr}) '
            "(call $return_data (i32.const 64) (i32.const 8)))")


def _f32(name: str, expr: str) -> str:
    return (f'(func (export "{name}") (f32.store (i32.const 64) {expr}) '
            "(call $return_data (i32.const 64) (i32.const 4)))")


NAN = module(f'(data (i32.const 0) "{wat_bytes(NAN_OPERANDS)}")' + " ".join([
    _f64("f64_div_zero", "(f64.div (f64.load (i32.const 0)) (f64.load (i32.const 0)))"),
    _f64("f64_sqrt_neg", "(f64.sqrt (f64.load (i32.const 8)))"),
    _f64("f64_add_nans", "(f64.add (f64.load (i32.const 16)) (f64.load (i32.const 24)))"),
    _f64("f64_mul_nan", "(f64.mul (f64.load (i32.const 24)) (f64.load (i32.const 8)))"),
    _f64("f64_const_nans", "(f64.add (f64.const nan:0x4000000000001) (f64.const -nan:0x123))"),
    _f32("f32_div_zero", "(f32.div (f32.load (i32.const 32)) (f32.load (i32.const 32)))"),
    _f32("f32_sqrt_neg", "(f32.sqrt (f32.load (i32.const 36)))"),
]))
NAN_ENTRIES = {
    "f64_div_zero": CANONICAL_F64, "f64_sqrt_neg": CANONICAL_F64,
    "f64_add_nans": CANONICAL_F64, "f64_mul_nan": CANONICAL_F64,
    "f64_const_nans": CANONICAL_F64, "f32_div_zero": CANONICAL_F32,
    "f32_sqrt_neg": CANONICAL_F32,
}

# -- POOL: reads initial state, then dirties memory, a global and grows memory ------
POOL_SEGMENT = b"fresh-data-segment"
POOL = module(f"""
  (global $g (mut i32) (i32.const 7))
  (data (i32.const 0) "INIT") (data (i32.const 100) "{wat_bytes(POOL_SEGMENT)}")
  (func (export "probe")
    (i32.store (i32.const 1000) (i32.load (i32.const 0)))
    (i32.store (i32.const 1004) (global.get $g))
    (memory.copy (i32.const 1008) (i32.const 100) (i32.const 18))
    (i32.store (i32.const 1026) (i32.load (i32.const 300)))
    (i32.store (i32.const 1030) (memory.size))
    (call $return_data (i32.const 1000) (i32.const 34))
    (i32.store (i32.const 0) (i32.const 0x54524944))
    (global.set $g (i32.const 99))
    (memory.fill (i32.const 100) (i32.const 0xab) (i32.const 18))
    (i32.store (i32.const 300) (i32.const 0xdeadbeef))
    (drop (memory.grow (i32.const 1))))
""")
POOL_FRESH = b"INIT" + struct.pack("<i", 7) + POOL_SEGMENT + b"\0\0\0\0" + struct.pack("<i", 1)


# -- harness -----------------------------------------------------------------------
class Chain:
    """An engine with in-memory code and state; `run` builds a Job and executes it."""

    def __init__(self, engine: WasmEngine) -> None:
        self.engine = engine
        self.state = MemoryState()
        self.codes = MemoryCode()
        self.n = 0

    @classmethod
    def start(cls, settings: Settings, raw_calls: bool = True) -> Chain:
        return cls(WasmEngine(settings, raw_calls=raw_calls))

    def deploy(self, address: str, code: bytes | str) -> str:
        return self.codes.deploy(address, wasm(code) if isinstance(code, str) else code)

    def job(self, contract: str, function: str, data: bytes = b"", *, fee_limit: int = 10_000_000,
            caller: str = "alice", height: int = 7, time: int = 1_700_000_000_000,
            mode: str = "call", timeout_ms: int | None = None) -> Job:
        self.n += 1
        return Job(f"tx-{self.n}", contract, function, data, fee_limit,
                   Context(caller, height, time), mode, timeout_ms)  # type: ignore[arg-type]

    def run(self, contract: str, function: str, data: bytes = b"", *, commit: bool = False,
            state: StateView | None = None, deploy: bool = False, **kw: object) -> Result:
        """Execute a job (`deploy`: as part of deploying the contract, so `init` may run)."""
        result = self.engine.execute(self.job(contract, function, data, **kw),  # type: ignore[arg-type]
                                     state or self.state, self.codes, deploy=deploy)
        check_fee(result)
        if commit and result.status == "ok":
            self.state.apply(contract, result.write_set)
        return result

    def close(self) -> None:
        close_engine(self.engine)


def close_engine(engine: WasmEngine) -> None:
    """Shut down and free the engine now: each pooling-allocator engine reserves ~1.3 TiB of
    address space, and ~100 live ones abort the process (test_engine_cache_pool.py). The
    suite also shares one engine per host-call path per module to keep the count low."""
    engine.shutdown()
    gc.collect()


def engine_pair(cache_dir: Path) -> dict[bool, WasmEngine]:
    """A raw-path and a public-path engine (keyed by `raw_calls`) sharing one cache."""
    settings = load_settings(cache_dir=cache_dir, executors=2)
    return {raw: WasmEngine(settings, raw_calls=raw) for raw in (True, False)}


def check_fee(result: Result) -> None:
    """The fee invariants every result keeps, whatever its status."""
    fee = result.fee
    assert sum(fee.breakdown.values()) == fee.used, fee
    assert 0 <= fee.used <= fee.limit, fee
    assert fee.refunded == fee.limit - fee.used
    wire = result.consensus_wire()["fee"]
    assert wire["used"] == fee.used and wire["refunded"] == fee.refunded
    if result.status == "out_of_fee":
        assert fee.used == fee.limit, fee
        assert result.write_set == {} and result.events == []
    if result.status == "reverted":
        assert fee.used > 0 and result.write_set == {} and result.events == []
    if result.status in ("timeout", "invalid", "error"):
        assert fee.used == 0, fee
    if result.status != "ok":
        assert result.error is not None and result.error["message"]


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


# -- a fixed scenario for determinism and raw/public equivalence ---------------------
def _scenario_steps() -> list[tuple[str, str, bytes, dict[str, object]]]:
    steps: list[tuple[str, str, bytes, dict[str, object]]] = [
        ("counter", "init", b"", {"deploy": True}), ("counter", "incr", b"", {}),
        ("counter", "init", b"", {}), ("counter", "incr", b"", {}),
        ("counter", "get", b"", {"mode": "view"}), ("counter", "incr", b"", {"mode": "view"}),
        ("token", "mint", u64(1_000), {}), ("token", "mint", u64(5) + b"carol", {}),
        ("token", "transfer", u64(300) + b"bob", {}), ("token", "transfer", u64(1) + b"alice", {}),
        ("token", "transfer", u64(10**6) + b"bob", {}), ("token", "transfer", b"x", {}),
        ("token", "transfer", u64(7) + b"alice", {"caller": "bob"}),
        ("token", "mint", u64(2**64 - 1), {}), ("token", "balance_of", b"bob", {}),
        ("token", "balance_of", b"", {}), ("token", "total_supply", b"", {"mode": "view"}),
        ("hello_as", "greet", b"world", {}), ("hello_as", "greet", b"", {}),
        ("hello_as", "greet", b"n" * 60_000, {}), ("hello_as", "sum_f64", b"", {}),
        ("hello_as", "sum_f64", struct.pack("<dd", 1.0, 2.0), {}),
        ("hello_as", "sum_f64", b"1234567", {}),
        ("probe", "echo", b"echo", {}), ("probe", "spam_log", b"log", {}),
        ("probe", "event", b"", {}), ("probe", "write", b"", {}),
        ("probe", "read", struct.pack("<I", 4) + b"key1", {}),
        ("probe", "write_remove_read", b"", {}), ("probe", "caller", b"", {}),
        ("probe", "height", b"", {"height": 2**62}), ("probe", "fee_left", b"", {}),
        ("probe", "sha256", b"abc", {}), ("probe", "keccak256", b"", {}),
        ("probe", "grow", struct.pack("<i", 3), {}), ("probe", "grow", struct.pack("<i", 999), {}),
        ("probe", "revert_after_write", b"", {}),
        ("probe", "hash_page_after_write", b"", {"fee_limit": 60_000}),
        ("probe", "return_oob", b"", {}), ("probe", "write_key", b"k" * 257, {}),
        ("probe", "write", b"", {"mode": "view"}),
        ("traps", "unreachable", b"", {}), ("traps", "div_zero", b"", {}),
        ("traps", "oob_load", b"", {}), ("traps", "recurse", b"", {}),
        ("nobody", "f", b"", {}), ("counter", "nope", b"", {}),
    ]
    steps += [("nan", name, b"", {}) for name in sorted(NAN_ENTRIES)]
    steps += [("traps", "spin", b"", {"fee_limit": limit}) for limit in (5_000, 50_001, 123_456)]
    steps += [("counter", "incr", b"", {"fee_limit": limit})
              for limit in (1, 5_000, 5_001, 7_000, 10_000, 13_000, 14_000)]
    steps += [("token", "transfer", u64(1) + b"dave", {"fee_limit": limit})
              for limit in (9_000, 12_000, 20_000, 25_000)]
    return steps


def scenario(engine: WasmEngine) -> list[bytes]:
    """Deploy every test and example contract, run a fixed list of jobs (committing each
    `ok` result) and return every result's consensus bytes."""
    chain = Chain(engine)
    for name, code in (("probe", PROBE), ("traps", TRAPS), ("nan", NAN)):
        chain.deploy(name, code)
    for name in ("counter", "token", "hello_as"):
        chain.deploy(name, example(name))
    out = []
    for contract, function, data, kw in _scenario_steps():
        result = chain.run(contract, function, data, commit=True, **kw)  # type: ignore[arg-type]
        out.append(result.consensus_bytes())
    return out


def scenario_main(cache_dir: str, raw_calls: bool) -> None:
    """Entry point for a separate process: print the scenario's results, one hex per line."""
    engine = WasmEngine(load_settings(cache_dir=Path(cache_dir)), raw_calls=raw_calls)
    for blob in scenario(engine):
        print(blob.hex())
    close_engine(engine)

"""WAT sources for the bench: compute kernels, workload classes, probes, generated modules.

Compute kernels import nothing and export `run: () -> ()`; they run both under the
engine's wasmtime Config and under plain `wasmtime.Config()` (fuel overhead).

Workload classes are ABI 1 contracts with one entry point `run`; each reads its
parameters from the call input (`n: u32 LE`, `len: u32 LE`, then free bytes), so
the same module serves the bench (one fixed size) and `wesfarm calibrate` (two
sizes, the slope is the price). Scratch buffers sit at SCRATCH (page 2, above the
64 KiB the input may fill).
"""

from __future__ import annotations

import random
import struct
from functools import cache

import wasmtime

SCRATCH = 0x20000
IMPORTS = {
    "input_size": "(func $input_size (result i32))",
    "input_read": "(func $input_read (param i32))",
    "return_data": "(func $return_data (param i32 i32))",
    "log": "(func $log (param i32 i32))",
    "emit_event": "(func $emit_event (param i32 i32 i32 i32))",
    "storage_read": "(func $storage_read (param i32 i32 i32 i32) (result i32))",
    "storage_write": "(func $storage_write (param i32 i32 i32 i32))",
    "block_height": "(func $block_height (result i64))",
    "block_time": "(func $block_time (result i64))",
    "fee_left": "(func $fee_left (result i64))",
    "sha256": "(func $sha256 (param i32 i32 i32))",
    "keccak256": "(func $keccak256 (param i32 i32 i32))",
    "ed25519_verify": "(func $ed25519_verify (param i32 i32 i32 i32) (result i32))",
    "secp256k1_verify": "(func $secp256k1_verify (param i32 i32 i32 i32) (result i32))",
    "secp256k1_recover": "(func $secp256k1_recover (param i32 i32 i32 i32) (result i32))",
    "call": "(func $call (param i32 i32 i32 i32 i32 i32 i64) (result i32))",
}


def _loop(body: str) -> str:
    """`body` n times (local $n counts down; $i counts up)."""
    return f"""
    (block $out (loop $l
      (br_if $out (i32.eqz (local.get $n)))
      {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))"""


# -- workload classes (and calibration probes): entry `run`, input = n, len, rest ----------

WORKLOADS: dict[str, str] = {
    # xorshift64 + multiply-accumulate: instructions only.
    "compute_loop": """
    (local.set $x (i64.const 88172645463325252))""" + _loop("""
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
      (local.set $acc (i64.add (local.get $acc) (i64.mul (local.get $x) (i64.const 31))))""")
    + "\n    (i64.store (i32.const 0x20000) (local.get $acc))",
    # grow n pages, write every 8 bytes, then `len` read-back passes summing them.
    "memory_heavy": """
    (local.set $p (memory.grow (local.get $n)))
    (if (i32.lt_s (local.get $p) (i32.const 0)) (then unreachable))
    (local.set $p (i32.mul (local.get $p) (i32.const 65536)))
    (local.set $end (i32.add (local.get $p) (i32.mul (local.get $n) (i32.const 65536))))
    (local.set $q (local.get $p))
    (loop $fill
      (i64.store (local.get $q) (i64.extend_i32_u (local.get $q)))
      (local.set $q (i32.add (local.get $q) (i32.const 8)))
      (br_if $fill (i32.lt_u (local.get $q) (local.get $end))))
    (local.set $n (local.get $len))""" + _loop("""
      (local.set $q (local.get $p))
      (loop $sum
        (local.set $acc (i64.add (local.get $acc) (i64.load (local.get $q))))
        (local.set $q (i32.add (local.get $q) (i32.const 8)))
        (br_if $sum (i32.lt_u (local.get $q) (local.get $end))))""")
    + "\n    (i64.store (i32.const 0x20000) (local.get $acc))",
    # three cheap context calls per iteration.
    "host_call_storm": _loop("""
      (drop (call $block_height))
      (drop (call $block_time))
      (drop (call $fee_left))"""),
    # a fresh 32-byte key per write, value of `len` bytes.
    "storage_writes": _loop("""
      (i32.store (i32.const 0x20000) (local.get $i))
      (call $storage_write (i32.const 0x20000) (i32.const 32) (i32.const 0x20100)
                           (local.get $len))"""),
    # sha256 and keccak256 of `len` bytes, alternately.
    "hashing": _loop("""
      (i32.store (i32.const 0x20000) (local.get $i))
      (if (i32.and (local.get $i) (i32.const 1))
        (then (call $keccak256 (i32.const 0x20000) (local.get $len) (i32.const 0x10000)))
        (else (call $sha256 (i32.const 0x20000) (local.get $len) (i32.const 0x10000))))"""),
    # n events (n <= max_events), 16-byte topic, `len` bytes of data.
    "event_spam": _loop("""
      (i32.store (i32.const 0x20100) (local.get $i))
      (call $emit_event (i32.const 0x20000) (i32.const 16) (i32.const 0x20100)
                        (local.get $len))"""),
}

PROBES: dict[str, str] = {
    # n calls of the `noop` contract's `run` with `len` bytes of input (ABI 1.1)
    "calls_out": """
    (i32.store (i32.const 0x20100) (i32.const 0x706f6f6e))
    (i32.store (i32.const 0x20108) (i32.const 0x006e7572))""" + _loop("""
      (if (call $call (i32.const 0x20100) (i32.const 4) (i32.const 0x20108) (i32.const 3)
                      (i32.const 0x20200) (local.get $len) (i64.const 0))
        (then unreachable))"""),
    # n Ed25519 verifications of the signature, key and `len`-byte message after the
    # parameters (bench/probes.py signs them); each must hold.
    "ed25519": _loop("""
      (if (i32.eqz (call $ed25519_verify (i32.const 8) (i32.const 104) (local.get $len)
                                         (i32.const 72))) (then unreachable))"""),
    # n ECDSA verifications of the hash, signature and 33-byte (compressed: the slower
    # one to decode) key after the parameters.
    "secp256k1_verify": _loop("""
      (if (i32.eqz (call $secp256k1_verify (i32.const 8) (i32.const 40) (i32.const 104)
                                           (i32.const 33))) (then unreachable))"""),
    # n recoveries of the key from the hash and signature, with recovery id `len`.
    "secp256k1_recover": _loop("""
      (if (i32.eqz (call $secp256k1_recover (i32.const 8) (i32.const 40) (local.get $len)
                                            (i32.const 0x20000))) (then unreachable))"""),
    # n log lines of `len` bytes (past max_logs they are dropped, still charged)
    "log_spam": _loop("(call $log (i32.const 0x20000) (local.get $len))"),
    # the whole input copied in, n times
    "input_bytes": _loop("(call $input_read (i32.const 0))"),
    # `len` bytes of return data, n times (the last wins)
    "output_bytes": _loop("(call $return_data (i32.const 0x20000) (local.get $len))"),
    # read the key given after the 8 parameter bytes, at most `len` bytes of it, n times
    "storage_reads": """
    (local.set $p (i32.sub (call $input_size) (i32.const 8)))""" + _loop("""
      (drop (call $storage_read (i32.const 8) (local.get $p) (i32.const 0x20000)
                                (local.get $len)))"""),
    # grow n pages and touch one byte in every 4 KiB of them (page faults, no fill)
    "pages": """
    (local.set $p (memory.grow (local.get $n)))
    (if (i32.lt_s (local.get $p) (i32.const 0)) (then unreachable))
    (local.set $p (i32.mul (local.get $p) (i32.const 65536)))
    (local.set $end (i32.add (local.get $p) (i32.mul (local.get $n) (i32.const 65536))))
    (block $none (br_if $none (i32.eqz (local.get $n)))
    (loop $touch
      (i32.store8 (local.get $p) (i32.const 1))
      (local.set $p (i32.add (local.get $p) (i32.const 4096)))
      (br_if $touch (i32.lt_u (local.get $p) (local.get $end)))))""",
}


def contract_wat(body: str, pages: int = 3) -> str:
    """An ABI 1 contract: `run` reads (n, len) from its input, then runs `body`."""
    imports = "\n  ".join(f'(import "wes" "{name}" {sig})' for name, sig in IMPORTS.items())
    return f"""(module
  {imports}
  (memory (export "memory") {pages})
  (func (export "run")
    (local $n i32) (local $len i32) (local $i i32) (local $p i32) (local $q i32)
    (local $end i32) (local $x i64) (local $acc i64) (local $y i64)
    (call $input_read (i32.const 0))
    (local.set $n (i32.load (i32.const 0)))
    (local.set $len (i32.load (i32.const 4)))
    {body}))
"""


def params(n: int, length: int = 0, extra: bytes = b"") -> bytes:
    """The call input of a workload/probe contract."""
    return struct.pack("<II", n, length) + extra


@cache
def wasm(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def workload_wasm(name: str) -> bytes:
    return wasm(contract_wat(WORKLOADS.get(name) or PROBES[name]))


NOOP_WAT = '(module (memory (export "memory") 1) (func (export "run")))'


def host_loop_wat(n: int, with_call: bool) -> str:
    """`run` loops n times, calling wes.block_height each time or not at all."""
    call = "(drop (call $bh))" if with_call else ""
    return f"""(module
  (import "wes" "block_height" (func $bh (result i64)))
  (memory (export "memory") 1)
  (func (export "run") (local $n i32)
    (local.set $n (i32.const {n}))
    (loop $l
      {call}
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n)))))
"""


# -- compute kernels (no imports): fuel overhead -------------------------------------------

_FILL = """
    (local.set $x (i32.const 12345))
    (local.set $i (i32.const 0))
    (loop $fill
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1103515245)) (i32.const 12345)))
      (i32.store (local.get $i) (i32.shr_u (local.get $x) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const {size}))))"""

KERNELS: dict[str, str] = {
    # xxhash64-style lanes over 64 KiB, then FNV-1a over the bytes; `rounds` times.
    "hash": """(module (memory (export "memory") 2)
  (func (export "run") (local $i i32) (local $x i32) (local $r i32) (local $h i64) (local $a i64)
""" + _FILL.format(size=65536) + """
    (local.set $r (i32.const {rounds}))
    (local.set $h (i64.const 0xcbf29ce484222325))
    (loop $round
      (local.set $i (i32.const 0))
      (loop $lane
        (local.set $a (i64.mul (i64.rotl (i64.add (local.get $a)
            (i64.mul (i64.load (local.get $i)) (i64.const 0xC2B2AE3D27D4EB4F)))
            (i64.const 31)) (i64.const 0x9E3779B185EBCA87)))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br_if $lane (i32.lt_u (local.get $i) (i32.const 65536))))
      (local.set $i (i32.const 0))
      (loop $byte
        (local.set $h (i64.mul (i64.xor (local.get $h) (i64.load8_u (local.get $i)))
                               (i64.const 0x100000001b3)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $byte (i32.lt_u (local.get $i) (i32.const 65536))))
      (local.set $r (i32.sub (local.get $r) (i32.const 1)))
      (br_if $round (local.get $r)))
    (i64.store (i32.const 65536) (i64.xor (local.get $h) (local.get $a)))))""",
    # heapsort of 16 Ki i32 with a sift-down function; `rounds` times (refilled each time).
    "sort": """(module (memory (export "memory") 1)
  (func $sift (param $root i32) (param $end i32)
    (local $child i32) (local $sw i32) (local $t i32)
    (block $done (loop $l
      (local.set $child (i32.add (i32.shl (local.get $root) (i32.const 1)) (i32.const 1)))
      (br_if $done (i32.gt_s (local.get $child) (local.get $end)))
      (local.set $sw (local.get $root))
      (if (i32.lt_s (i32.load (i32.shl (local.get $sw) (i32.const 2)))
                    (i32.load (i32.shl (local.get $child) (i32.const 2))))
        (then (local.set $sw (local.get $child))))
      (if (i32.le_s (i32.add (local.get $child) (i32.const 1)) (local.get $end))
        (then (if (i32.lt_s (i32.load (i32.shl (local.get $sw) (i32.const 2)))
                  (i32.load (i32.shl (i32.add (local.get $child) (i32.const 1)) (i32.const 2))))
          (then (local.set $sw (i32.add (local.get $child) (i32.const 1)))))))
      (br_if $done (i32.eq (local.get $sw) (local.get $root)))
      (local.set $t (i32.load (i32.shl (local.get $root) (i32.const 2))))
      (i32.store (i32.shl (local.get $root) (i32.const 2))
                 (i32.load (i32.shl (local.get $sw) (i32.const 2))))
      (i32.store (i32.shl (local.get $sw) (i32.const 2)) (local.get $t))
      (local.set $root (local.get $sw))
      (br $l))))
  (func (export "run") (local $i i32) (local $x i32) (local $r i32) (local $s i32)
    (local.set $r (i32.const {rounds}))
    (loop $round
""" + _FILL.format(size=65536) + """
      (local.set $s (i32.const 8191))
      (loop $heapify
        (call $sift (local.get $s) (i32.const 16383))
        (local.set $s (i32.sub (local.get $s) (i32.const 1)))
        (br_if $heapify (i32.ge_s (local.get $s) (i32.const 0))))
      (local.set $s (i32.const 16383))
      (loop $pop
        (local.set $x (i32.load (i32.const 0)))
        (i32.store (i32.const 0) (i32.load (i32.shl (local.get $s) (i32.const 2))))
        (i32.store (i32.shl (local.get $s) (i32.const 2)) (local.get $x))
        (local.set $s (i32.sub (local.get $s) (i32.const 1)))
        (call $sift (i32.const 0) (local.get $s))
        (br_if $pop (i32.gt_s (local.get $s) (i32.const 0))))
      (local.set $r (i32.sub (local.get $r) (i32.const 1)))
      (br_if $round (local.get $r)))))""",
    # sieve of Eratosthenes over 1 MiB (one byte per number); `rounds` times.
    "sieve": """(module (memory (export "memory") 17)
  (func (export "run") (local $i i32) (local $j i32) (local $r i32) (local $c i32)
    (local.set $r (i32.const {rounds}))
    (loop $round
      (memory.fill (i32.const 0) (i32.const 0) (i32.const 1048576))
      (local.set $c (i32.const 0))
      (local.set $i (i32.const 2))
      (loop $outer
        (if (i32.eqz (i32.load8_u (local.get $i))) (then
          (local.set $c (i32.add (local.get $c) (i32.const 1)))
          (local.set $j (i32.mul (local.get $i) (local.get $i)))
          (block $skip (br_if $skip (i32.ge_u (local.get $j) (i32.const 1048576)))
            (loop $inner
              (i32.store8 (local.get $j) (i32.const 1))
              (local.set $j (i32.add (local.get $j) (local.get $i)))
              (br_if $inner (i32.lt_u (local.get $j) (i32.const 1048576)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $outer (i32.lt_u (local.get $i) (i32.const 1048576))))
      (local.set $r (i32.sub (local.get $r) (i32.const 1)))
      (br_if $round (local.get $r)))
    (i32.store (i32.const 1048576) (local.get $c))))""",
    # 64x64 i32 matrix product (row-major, A at 0, B at 16 KiB, C at 32 KiB); `rounds` times.
    "matmul": """(module (memory (export "memory") 1)
  (func (export "run") (local $i i32) (local $j i32) (local $k i32) (local $x i32)
    (local $r i32) (local $s i32)
""" + _FILL.format(size=32768) + """
    (local.set $r (i32.const {rounds}))
    (loop $round
      (local.set $i (i32.const 0))
      (loop $li
        (local.set $j (i32.const 0))
        (loop $lj
          (local.set $s (i32.const 0))
          (local.set $k (i32.const 0))
          (loop $lk
            (local.set $s (i32.add (local.get $s) (i32.mul
              (i32.load (i32.shl (i32.add (i32.shl (local.get $i) (i32.const 6)) (local.get $k))
                                 (i32.const 2)))
              (i32.load offset=16384 (i32.shl (i32.add (i32.shl (local.get $k) (i32.const 6))
                                                       (local.get $j)) (i32.const 2))))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br_if $lk (i32.lt_u (local.get $k) (i32.const 64))))
          (i32.store offset=32768 (i32.shl (i32.add (i32.shl (local.get $i) (i32.const 6))
                                               (local.get $j)) (i32.const 2)) (local.get $s))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br_if $lj (i32.lt_u (local.get $j) (i32.const 64))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $li (i32.lt_u (local.get $i) (i32.const 64))))
      (local.set $r (i32.sub (local.get $r) (i32.const 1)))
      (br_if $round (local.get $r)))))""",
}


def kernel_wasm(name: str, rounds: int) -> bytes:
    return wasm(KERNELS[name].replace("{rounds}", str(rounds)))


# -- generated modules of a given size (compile time) --------------------------------------

def _gen_func(k: int, rng: random.Random) -> str:
    ops = ("i32.add", "i32.sub", "i32.mul", "i32.xor", "i32.or", "i32.and", "i32.shl",
           "i32.shr_u", "i32.rotl")
    lines = []
    for _ in range(rng.randint(6, 14)):
        op = rng.choice(ops)
        c = rng.randint(1, 1 << 30)
        lines.append(f"(local.set $a ({op} (local.get $a) (i32.const {c})))")
        lines.append(f"(local.set $b (i32.add (local.get $b) (i32.mul (local.get $a) "
                     f"(i32.const {rng.randint(3, 999)}))))")
    callee = f"(call $f{k - 1} (local.get $b))" if k else "(local.get $b)"
    return f"""(func $f{k} (param $x i32) (result i32) (local $a i32) (local $b i32) (local $i i32)
  (local.set $a (local.get $x))
  (loop $l
    {' '.join(lines)}
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br_if $l (i32.lt_u (local.get $i) (i32.const {rng.randint(2, 64)}))))
  (if (result i32) (i32.and (local.get $b) (i32.const 1))
    (then {callee}) (else (i32.xor (local.get $a) (local.get $b)))))"""


def generated_module(target_bytes: int, seed: int = 1) -> bytes:
    """A policy-conforming module of about `target_bytes` of real code."""
    rng = random.Random(seed)
    funcs = [_gen_func(k, rng) for k in range(50)]
    per_func = len(wasmtime.wat2wasm(_gen_module(funcs))) / len(funcs)
    count = max(1, round(target_bytes / per_func))
    funcs.extend(_gen_func(k, rng) for k in range(len(funcs), count))
    return bytes(wasmtime.wat2wasm(_gen_module(funcs[:count])))


def _gen_module(funcs: list[str]) -> str:
    body = "\n".join(funcs)
    last = len(funcs) - 1
    return f"""(module (memory (export "memory") 1)
{body}
(func (export "run") (i32.store (i32.const 0) (call $f{last} (i32.const 7)))))"""

"""Hostile shapes for calibration and fairness: what costs time that plain fuel misses.

Each is a body for bench/kernels.py's `contract_wat` (entry `run`; input = n, len, rest),
except the modules that need another frame (recursion, traps, sized modules).
"""

from __future__ import annotations

from bench.kernels import _loop, contract_wat, wasm

# Two independent xorshift chains: dense compute with some instruction-level parallelism,
# between a single dependent chain and a fully parallel kernel.
_MIX = """
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $y (i64.xor (local.get $y) (i64.shl (local.get $y) (i64.const 11))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (local.set $y (i64.xor (local.get $y) (i64.shr_u (local.get $y) (i64.const 5))))
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
      (local.set $y (i64.xor (local.get $y) (i64.shl (local.get $y) (i64.const 19))))
      (local.set $acc (i64.add (local.get $acc) (i64.mul (local.get $x) (local.get $y))))"""

SHAPES: dict[str, str] = {
    # dense compute: the xorshift + multiply-accumulate of compute_loop, 16 times per
    # iteration, so loop overhead is a small part of it (the calibration's anchor)
    "compute_unrolled": """
    (local.set $x (i64.const 88172645463325252)) (local.set $y (i64.const 7))""" + _loop(_MIX * 8)
    + "\n    (i64.store (i32.const 0x20000) (local.get $acc))",
    # n iterations of the smallest counted loop there is
    "bare_loop": """
    (block $out (loop $l
      (br_if $out (i32.eqz (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))""",
    # a branch per iteration that the predictor learns (always taken the same way)
    "branch_steady": _loop("""
      (if (i32.eq (local.get $n) (i32.const 0)) (then (local.set $acc (i64.const 1))))"""),
    # a branch per iteration on a pseudo-random bit: mispredicted half the time
    "branch_random": """
    (local.set $x (i64.const 88172645463325252))""" + _loop("""
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (if (i32.wrap_i64 (i64.and (local.get $x) (i64.const 1)))
        (then (local.set $acc (i64.add (local.get $acc) (i64.const 1)))))"""),
    # a br_table of 16 targets on a pseudo-random index
    "br_table": """
    (local.set $x (i64.const 88172645463325252))""" + _loop("""
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (block $b0 (block $b1 (block $b2 (block $b3 (block $b4 (block $b5 (block $b6
      (block $b7 (block $b8 (block $b9 (block $ba (block $bb (block $bc (block $bd
      (block $be (block $bf
        (br_table $b0 $b1 $b2 $b3 $b4 $b5 $b6 $b7 $b8 $b9 $ba $bb $bc $bd $be $bf
          (i32.wrap_i64 (i64.and (local.get $x) (i64.const 15)))))
      ) ) ) ) ) ) ) ) ) ) ) ) ) ) )
      (local.set $acc (i64.add (local.get $acc) (i64.const 1)))"""),
    # an empty function called in a hot loop
    "calls": _loop("(call $nothing)"),
    # input_read of the whole input, n times (len: ignored; the input's size is the unit)
    "input_bytes": _loop("(call $input_read (i32.const 0))"),
    # a walk of one random cycle through `len` bytes of memory (grown first; Sattolo's
    # shuffle makes it a single cycle): 16 loads per iteration, each on the last one's
    # result, so past the caches every load waits for memory
    "pointer_chase": """
    (local.set $p (memory.grow (i32.add (i32.shr_u (local.get $len) (i32.const 16))
                                        (i32.const 1))))
    (if (i32.lt_s (local.get $p) (i32.const 0)) (then unreachable))
    (local.set $p (i32.mul (local.get $p) (i32.const 65536)))
    (loop $init
      (local.set $q (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2))))
      (i32.store (local.get $q) (local.get $q))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $init (i32.lt_u (local.get $i) (i32.shr_u (local.get $len) (i32.const 2)))))
    (local.set $x (i64.const 88172645463325252))
    (local.set $i (i32.sub (i32.shr_u (local.get $len) (i32.const 2)) (i32.const 1)))
    (loop $shuffle
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (local.set $q (i32.add (local.get $p) (i32.shl (i32.wrap_i64 (i64.rem_u (local.get $x)
        (i64.extend_i32_u (local.get $i)))) (i32.const 2))))
      (local.set $end (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2))))
      (local.set $y (i64.extend_i32_u (i32.load (local.get $end))))
      (i32.store (local.get $end) (i32.load (local.get $q)))
      (i32.store (local.get $q) (i32.wrap_i64 (local.get $y)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $shuffle (local.get $i)))
    (local.set $q (local.get $p))""" + _loop(
        "(local.set $q " + "(i32.load " * 16 + "(local.get $q)" + ")" * 16 + ")"),
    # a chain of integer divisions, each on the last one's result (by a divisor the
    # compiler cannot see: `len`)
    "divide_chain": _loop("""
      (local.set $x (i64.div_u (i64.add (i64.mul (local.get $x) (i64.const 7))
                                        (i64.const 12345))
                               (i64.extend_i32_u (local.get $len))))""" * 8),
}

# Modules of their own: recursion (calls and unwinding), and code of a given size.
RECURSION = """(module
  (import "wes" "input_read" (func $ir (param i32)))
  (memory (export "memory") 1)
  (func $down (param i32)
    (if (i32.eqz (local.get 0)) (then (if (i32.load (i32.const 4)) (then unreachable))
                                      (return)))
    (call $down (i32.sub (local.get 0) (i32.const 1))))
  ;; input: depth (u32), trap (u32: 1 = trap at the bottom)
  (func (export "run") (call $ir (i32.const 0)) (call $down (i32.load (i32.const 0))))
  (func (export "overflow") (call $forever))
  (func $forever (call $forever)))"""


def shape_wasm(name: str) -> bytes:
    extra = "(func $nothing)" if name == "calls" else ""
    wat = contract_wat(SHAPES[name], pages=3)
    if extra:
        wat = wat.rstrip()[:-1] + extra + ")"
    return wasm(wat)

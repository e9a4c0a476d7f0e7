"""Calibration probes: for each price, two runs that differ (mostly) in that price's unit.

A probe's price is the cost of the difference, after what the other units of the
difference are known to cost (bench/calibrate.py solves them in PROBES' order). Every
unit count is exact: bench/units.py reads it off the fee meter under indicator schedules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import coincurve
from nacl.signing import SigningKey

from bench import kernels, shapes
from bench.kernels import params

PAGE = 65_536
DISTINCT_READS = """
    (local.set $p (i32.const 0x20000))""" + kernels._loop("""
      (i32.store (local.get $p) (local.get $i))
      (drop (call $storage_read (local.get $p) (i32.const 4) (i32.const 0x20100)
                                (i32.const 0)))""")
TRAP_AT_THE_END = "(call $return_data (i32.const 0) (i32.const 0)) unreachable"


def _branches(count: int) -> str:
    """`count` branches per iteration, each on a pseudo-random bit (a mispredict half the
    time) when `len` is 1, or on a constant condition (learned) when it is 0."""
    ifs = " ".join(
        f"(if (i32.wrap_i64 (i64.and (i64.mul (local.get $x) (i64.extend_i32_u (local.get $len)))"
        f" (i64.const {1 << (k % 60)}))) (then (local.set $acc (i64.add (local.get $acc) "
        "(i64.const 1)))))" for k in range(count))
    return """
    (local.set $x (i64.const 88172645463325252))""" + kernels._loop(f"""
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      {ifs}""")


@cache
def code(name: str) -> bytes:
    """The module of a probe or workload contract, by name."""
    if name in kernels.WORKLOADS or name in kernels.PROBES:
        return kernels.workload_wasm(name)
    if name in shapes.SHAPES:
        return shapes.shape_wasm(name)
    if name.startswith("branches_"):
        return kernels.wasm(kernels.contract_wat(_branches(int(name.split("_")[1]))))
    if name.startswith("sized_"):  # real code of about that many bytes
        return kernels.generated_module(int(name.split("_")[1]))
    return kernels.wasm({
        "recursion": shapes.RECURSION,
        "distinct_reads": kernels.contract_wat(DISTINCT_READS),
        "noop": kernels.NOOP_WAT,
        "trap": kernels.contract_wat(TRAP_AT_THE_END),
    }[name])


@dataclass(frozen=True, slots=True)
class Run:
    contract: str
    data: bytes = b""
    function: str = "run"
    expect: str = "ok"


@dataclass(frozen=True, slots=True)
class Probe:
    price: str
    small: Run
    large: Run
    cold: bool = False  # every execution brings the module in from the artifact cache
    farm_state: bool = False  # state through the farm's Redis view (a real executor's reads)


def depth_input(depth: int, trap: bool) -> bytes:
    return depth.to_bytes(4, "little") + int(trap).to_bytes(4, "little")


# One fixed key of each kind, so every run signs the same bytes.
_SEED = bytes(range(32))


def ed25519_input(n: int, length: int) -> bytes:
    """The `ed25519` kernel's input: a valid signature, its key and a `length`-byte message."""
    key, message = SigningKey(_SEED), bytes(length)
    return params(n, length, key.sign(message).signature + bytes(key.verify_key) + message)


def secp256k1_input(n: int, recover: bool) -> bytes:
    """The secp256k1 kernels' input: a hash, its low-s signature and the compressed key;
    for recovery, `len` is the signature's recovery id."""
    key, digest = coincurve.PrivateKey(_SEED), bytes(range(100, 132))
    signed = key.sign_recoverable(digest, hasher=None)  # low s: libsecp256k1 normalizes
    return params(n, signed[64] if recover else 0,
                  digest + signed[:64] + key.public_key.format(compressed=True))


def _pair(price: str, contract: str, small: tuple[Any, ...], large: tuple[Any, ...],
          **kw: bool) -> Probe:
    """A probe of one contract at two sizes (the args of kernels.params)."""
    return Probe(price, Run(contract, params(*small)), Run(contract, params(*large)), **kw)


# In solving order: each probe's other units are priced by the probes before it.
PROBES: tuple[Probe, ...] = (
    _pair("instruction", "compute_unrolled", (2_000,), (20_000,)),
    # branches the predictor learns: what nearly every branch is (a mispredicted one costs
    # several times more, and the same fee: bench/workloads.py reports it apart)
    Probe("branch_fuel", Run("branches_1", params(20_000, 0)),
          Run("branches_9", params(20_000, 0))),
    _pair("loop_fuel", "bare_loop", (20_000,), (200_000,)),
    _pair("call_fuel", "calls", (5_000,), (50_000,)),
    # loads that hit the first-level cache (16 KiB): what a load costs when it waits for
    # nothing; a load that misses every cache is what bounds the fee a timeout may hold
    _pair("load_fuel", "pointer_chase", (2_000, 16_384), (20_000, 16_384)),
    _pair("divide_fuel", "divide_chain", (2_000, 3), (20_000, 3)),
    _pair("host_call", "host_call_storm", (200,), (2_000,)),
    _pair("byte_in", "input_bytes", (300, 0, bytes(1_000)), (300, 0, bytes(60_000))),
    _pair("byte_out", "output_bytes", (300, 1_000), (300, 60_000)),
    _pair("storage_read", "storage_reads", (300, 0, b"k"), (3_000, 0, b"k")),
    _pair("storage_read_byte", "storage_reads", (1_000, 16, b"big"), (1_000, 16_384, b"big")),
    _pair("storage_read_key", "distinct_reads", (100,), (1_000,), farm_state=True),
    _pair("storage_write_byte", "storage_writes", (500, 8), (500, 1_900)),
    _pair("storage_write", "storage_writes", (50, 8), (500, 8)),
    _pair("event_byte", "event_spam", (256, 16), (256, 4_096)),
    _pair("event", "event_spam", (32, 16), (256, 16)),
    _pair("hash_byte", "hashing", (200, 64), (200, 16_384)),
    _pair("hash", "hashing", (100, 0), (1_000, 0)),
    Probe("ed25519_byte", Run("ed25519", ed25519_input(50, 64)),
          Run("ed25519", ed25519_input(50, 16_384))),
    Probe("ed25519_verify", Run("ed25519", ed25519_input(20, 0)),
          Run("ed25519", ed25519_input(200, 0))),
    Probe("secp256k1_verify", Run("secp256k1_verify", secp256k1_input(20, False)),
          Run("secp256k1_verify", secp256k1_input(200, False))),
    Probe("secp256k1_recover", Run("secp256k1_recover", secp256k1_input(20, True)),
          Run("secp256k1_recover", secp256k1_input(200, True))),
    _pair("memory_page", "pages", (16,), (128,)),
    Probe("execution", Run("noop"), Run("noop")),  # solved on the large run alone
    Probe("module_byte", Run("sized_1000"), Run("sized_400000"), cold=True),
    Probe("trap", Run("noop"), Run("trap", params(0), expect="trap")),
    Probe("trap_frame", Run("recursion", depth_input(100, True), expect="trap"),
          Run("recursion", depth_input(5_000, True), expect="trap")),
    # a call's own price: what a call costs beyond the callee's execution (priced above)
    _pair("call_byte", "calls_out", (100, 64), (100, 60_000)),
    _pair("call", "calls_out", (20, 0), (200, 0)),
)
# What the probes' state holds: a small key and a 16 KiB value.
STATE = {"storage_reads": {b"k": (b"v", 1), b"big": (b"\x5a" * 16_384, 1)}}

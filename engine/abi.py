"""The host ABI as data: every `wes.*` function, its type, its capability and the prices it
charges. Defined once; the policy (imports), the Python reference host (engine/host.py)
and the C host (engine/native/abi.c, checked against this table when it loads) are held
to it. docs/ABI.md is the contract authors' reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ValType = Literal["i32", "i64"]
I32: ValType = "i32"
I64: ValType = "i64"

# Capabilities in bit order (the native host's denied mask: bit i is CAPABILITIES[i]).
CAPABILITIES = ("io", "state-read", "state-write", "events", "context", "crypto", "debug",
                "calls")
VIEW_DENIED = frozenset({"state-write", "events"})
NOTHING_DENIED: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class HostFunction:
    name: str
    params: tuple[ValType, ...]
    results: tuple[ValType, ...]
    capability: str
    prices: tuple[str, ...]  # FeeSchedule fields it charges beyond `host_call`

    @property
    def signature(self) -> str:
        """`params->results` in letters (i: i32, I: i64), the form the C table states."""
        letter = {I32: "i", I64: "I"}
        return ("".join(letter[p] for p in self.params) + "->"
                + "".join(letter[r] for r in self.results))


def _fn(name: str, params: int | tuple[ValType, ...], results: tuple[ValType, ...],
        capability: str, *prices: str) -> HostFunction:
    types = (I32,) * params if isinstance(params, int) else params
    return HostFunction(name, types, results, capability, prices)


ABI: dict[str, HostFunction] = {f.name: f for f in (
    _fn("input_size", 0, (I32,), "io"),
    _fn("input_read", 1, (), "io", "byte_in"),
    _fn("return_data", 2, (), "io", "byte_out"),
    _fn("revert", 2, (), "io", "byte_out"),
    _fn("log", 2, (), "debug", "byte_out"),
    _fn("emit_event", 4, (), "events", "event", "event_byte"),
    _fn("storage_read", 4, (I32,), "state-read", "storage_read", "storage_read_byte"),
    _fn("storage_write", 4, (), "state-write", "storage_write", "storage_write_byte"),
    _fn("storage_remove", 2, (), "state-write", "storage_write", "storage_write_byte"),
    _fn("caller", 1, (I32,), "context", "byte_in"),
    _fn("self_address", 1, (I32,), "context", "byte_in"),
    _fn("block_height", 0, (I64,), "context"),
    _fn("block_time", 0, (I64,), "context"),
    _fn("fee_left", 0, (I64,), "context"),
    _fn("sha256", 3, (), "crypto", "hash_byte"),
    _fn("keccak256", 3, (), "crypto", "hash_byte"),
    _fn("ed25519_verify", 4, (I32,), "crypto", "ed25519_verify", "ed25519_byte"),
    _fn("secp256k1_verify", 4, (I32,), "crypto", "secp256k1_verify"),
    _fn("secp256k1_recover", 4, (I32,), "crypto", "secp256k1_recover"),
    _fn("call", (I32, I32, I32, I32, I32, I32, I64), (I32,), "calls", "call", "call_byte"),
    _fn("result_size", 0, (I32,), "calls"),
    _fn("result_read", 1, (), "calls", "byte_in"),
)}
ABI_VERSION = "1.1"
# Call statuses (wes.call's result).
CALL_OK, CALL_REVERTED, CALL_OUT_OF_FEE, CALL_TRAPPED, CALL_NOT_FOUND, CALL_DENIED = range(6)
# The engine's own imports, added by the instrumentation (engine/instrument.py) under module
# "wes_internal": contracts cannot import them (the policy admits only module "wes"). A
# capability of "" is never denied.
HOOKS: dict[str, HostFunction] = {f.name: f for f in (
    _fn("memory_grow", 1, (I32,), "", "memory_page"),
)}


def capability_mask(denied: frozenset[str]) -> int:
    """The native host's form of a denied set: bit i for CAPABILITIES[i]."""
    return sum(1 << i for i, cap in enumerate(CAPABILITIES) if cap in denied)


def check_native_table(functions: dict[str, tuple[int, str, str]],
                       capabilities: tuple[str, ...]) -> None:
    """Raise RuntimeError unless the C host's table states exactly this ABI: the same
    functions, each with the same signature and capability, and capability bits in the
    same order. `functions`: name -> (trampoline address, signature, capability)."""
    problems = []
    table = {**ABI, **HOOKS}
    if tuple(capabilities) != CAPABILITIES:
        problems.append(f"capability bits {capabilities} != {CAPABILITIES}")
    for name in sorted(set(functions) ^ set(table)):
        where = "only in the C host" if name in functions else "missing from the C host"
        problems.append(f"wes.{name} is {where}")
    for name in sorted(set(functions) & set(table)):
        _addr, signature, capability = functions[name]
        spec = table[name]
        if signature != spec.signature or capability != spec.capability:
            problems.append(f"wes.{name}: C says {signature} ({capability}), the ABI says "
                            f"{spec.signature} ({spec.capability})")
    if problems:
        raise RuntimeError("engine._native does not match engine/abi.py: " + "; ".join(problems))

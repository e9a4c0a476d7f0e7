"""Bind the ABI's host functions into a wasmtime Linker: native or public trampolines.

The raw path binds engine._native's C trampolines as unchecked host functions (their
env is the native Host); the public path binds engine/host.py's reference functions
through wasmtime-py's Linker.define_func. Tests run every contract both ways and
compare results byte for byte.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import wasmtime

from engine import raw, signatures
from engine.abi import ABI, HOOKS, I32, HostFunction
from engine.errors import ContractTrap
from engine.execution_state import ExecutionState
from engine.fees import FeeSchedule
from engine.host import IMPLEMENTATIONS, keccak256_digest, sha256_digest
from engine.instrument import HOOK_MODULE

if TYPE_CHECKING:
    from engine._native import Host as NativeHost

_VALTYPE = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}


class CurrentExecution:
    """Where public trampolines find the execution in progress (one at a time per engine).

    Trampolines hold this small slot, never the engine, so that an engine is freed
    once unused (wasmtime-py's public callbacks live in a global table)."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: ExecutionState | None = None


def _denied(spec: HostFunction) -> ContractTrap:
    return ContractTrap(f"wes.{spec.name}: capability denied ({spec.capability})",
                        "capability_denied")


def _public_callback(spec: HostFunction, holder: CurrentExecution, base: int) -> Callable[..., Any]:
    impl, cap, result = IMPLEMENTATIONS[spec.name], spec.capability, spec.results
    name = f"wes.{spec.name}"
    # Arguments as unsigned ints of their own width (an i64 keeps its 64 bits).
    masks = tuple(0xFFFFFFFF if p == I32 else 0xFFFFFFFFFFFFFFFF for p in spec.params)

    def callback(caller: wasmtime.Caller, *args: int) -> int | None:
        ex = holder.current
        assert ex is not None, "host call outside an execution"
        try:
            ex.enter(base, name)
            if cap in ex.denied:
                raise _denied(spec)
            value = impl(ex, *(a & m for a, m in zip(args, masks, strict=True)))
            ex.trim_fuel()
        except BaseException as exc:
            ex.pending = exc
            raise
        if not result:
            return None
        assert value is not None
        bits = 32 if result[0] == I32 else 64
        return value - (1 << bits) if value >> (bits - 1) else value

    return callback


class HostLinker:
    """A Linker holding every `wes.*` function and the instrumentation's hooks (and
    whatever those must outlive)."""

    def __init__(self, engine: wasmtime.Engine, holder: CurrentExecution,
                 native_host: NativeHost | None, host_call_price: int) -> None:
        self.linker = wasmtime.Linker(engine)
        self._keep: list[object] = [native_host]
        for module, table in (("wes", ABI), (HOOK_MODULE, HOOKS)):
            for spec in table.values():
                self._define(module, spec, holder, native_host, host_call_price)

    def _define(self, module: str, spec: HostFunction, holder: CurrentExecution,
                native_host: NativeHost | None, host_call_price: int) -> None:
        ty = wasmtime.FuncType([_VALTYPE[p] for p in spec.params],
                               [_VALTYPE[r] for r in spec.results])
        if native_host is None:
            callback = _public_callback(spec, holder, host_call_price)
            self.linker.define_func(module, spec.name, ty, callback, access_caller=True)
            return
        assert raw.native is not None
        name, where = spec.name.encode(), module.encode()
        err = raw.linker_define_func_unchecked(
            ctypes.cast(self.linker.ptr(), ctypes.c_void_p), where, len(where), name, len(name),
            ctypes.cast(ty.ptr(), ctypes.c_void_p), raw.native.FUNCTIONS[spec.name][0],
            id(native_host), None,
        )
        if err:
            raise raw.take_error(err)
        self._keep.append(ty)


def native_host(schedule: FeeSchedule, limits: Any,
                call: Callable[..., tuple[int, bytes]]) -> NativeHost:
    """The C host functions with this engine's prices and limits (native.h's order)."""
    prices = (schedule.instruction, schedule.host_call, schedule.byte_in, schedule.byte_out,
              schedule.storage_read, schedule.storage_read_key, schedule.storage_read_byte,
              schedule.storage_write, schedule.storage_write_byte, schedule.event,
              schedule.event_byte, schedule.hash, schedule.hash_byte, schedule.ed25519_verify,
              schedule.ed25519_byte, schedule.secp256k1_verify, schedule.secp256k1_recover,
              schedule.call, schedule.call_byte, schedule.memory_page,
              schedule.memory_free_pages)
    bounds = (limits.max_return_bytes, limits.max_logs, limits.max_log_bytes, limits.max_events,
              limits.max_event_topic_bytes, limits.max_event_data_bytes, limits.max_key_bytes,
              limits.max_value_bytes, limits.max_memory_pages, limits.max_read_entries,
              limits.max_write_entries, limits.max_write_bytes, limits.max_input_bytes)
    assert raw.native is not None
    callbacks = (sha256_digest, keccak256_digest, signatures.ed25519_verify,
                 signatures.secp256k1_verify, signatures.secp256k1_recover, call)
    host: NativeHost = raw.native.Host(prices, bounds, callbacks)
    return host

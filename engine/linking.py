"""Bind ABI 1's host functions into a wasmtime Linker: raw (unchecked) or public trampolines.

Both paths run the same host function bodies (engine/host.py) and the same fuel
settlement; only the crossing differs. Tests run every contract both ways and
compare results byte for byte.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import wasmtime

from engine import raw
from engine.errors import ContractTrap, InternalError
from engine.execution import Execution
from engine.host import HOST_FUNCTIONS, I32, I64, HostSpec

_VALTYPE = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}


class CurrentExecution:
    """Where trampolines find the execution in progress (one at a time per engine).

    Trampolines hold this small slot, never the engine, so that an engine is freed
    once unused (wasmtime-py's public callbacks live in a global table)."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: Execution | None = None


def _denied(spec: HostSpec) -> ContractTrap:
    return ContractTrap(f"wes.{spec.name}: capability denied ({spec.capability})",
                        "capability_denied")


def _raw_callback(spec: HostSpec, holder: CurrentExecution, base: int) -> Callable[..., int]:
    impl, cap, arity, result = spec.impl, spec.capability, len(spec.params), spec.results
    name = f"wes.{spec.name}"
    message = f"wes.{spec.name} trapped"
    wide = bool(result) and result[0] == I64
    get_fuel = raw.fast_get_fuel

    # The caller's context is the store's own (checked): ex.ctx serves, saving a crossing.
    def callback(_env: int | None, _caller: int, args: Any, _n: int) -> int:
        ex = holder.current
        try:
            assert ex is not None, "host call outside an execution"
            # Execution.enter, inlined: this runs on every crossing.
            if get_fuel(ex.ctx, ex.fuel_ref):
                raise InternalError("wasmtime refused get_fuel")
            left = ex.fuel_cell.value
            meter = ex.meter
            charge = (ex.fuel_granted - left) * ex.fee_price
            ex.fuel_granted = left
            if charge + base <= meter.limit - meter.used:
                meter.used += charge + base
                breakdown = meter.breakdown
                breakdown["instructions"] += charge
                breakdown["host_calls"] += base
            else:
                meter.consume(charge, "instructions")
                meter.consume(base, "host_calls", name)
            if cap in ex.denied:
                raise _denied(spec)
            if arity == 0:
                value = impl(ex)
            elif arity == 1:
                value = impl(ex, args[0])
            elif arity == 2:
                value = impl(ex, args[0], args[4])
            elif arity == 3:
                value = impl(ex, args[0], args[4], args[8])
            else:
                value = impl(ex, args[0], args[4], args[8], args[12])
            if result:
                assert value is not None
                args[0] = value & 0xFFFFFFFF
                if wide:
                    args[1] = (value >> 32) & 0xFFFFFFFF
            return 0
        except BaseException as exc:  # nothing may escape a ctypes callback
            if ex is not None:
                ex.pending = exc
            return raw.new_trap(message)

    return callback


def _public_callback(spec: HostSpec, holder: CurrentExecution, base: int) -> Callable[..., Any]:
    impl, cap, result = spec.impl, spec.capability, spec.results
    name = f"wes.{spec.name}"

    def callback(caller: wasmtime.Caller, *args: int) -> int | None:
        ex = holder.current
        assert ex is not None, "host call outside an execution"
        try:
            ex.enter(base, name)
            if cap in ex.denied:
                raise _denied(spec)
            value = impl(ex, *(a & 0xFFFFFFFF for a in args))
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
    """A Linker holding every `wes.*` function; keeps the callback thunks alive with it."""

    def __init__(self, engine: wasmtime.Engine, holder: CurrentExecution, raw_calls: bool,
                 host_call_price: int) -> None:
        self.linker = wasmtime.Linker(engine)
        self._keep: list[object] = []
        for spec in HOST_FUNCTIONS.values():
            ty = wasmtime.FuncType([_VALTYPE[p] for p in spec.params],
                                   [_VALTYPE[r] for r in spec.results])
            if raw_calls:
                thunk = raw.HOST_CALLBACK(_raw_callback(spec, holder, host_call_price))
                name = spec.name.encode()
                err = raw.linker_define_func_unchecked(
                    ctypes.cast(self.linker.ptr(), ctypes.c_void_p), b"wes", 3, name, len(name),
                    ctypes.cast(ty.ptr(), ctypes.c_void_p), thunk, None, raw.NO_FINALIZER,
                )
                if err:
                    raise raw.take_error(err)
                self._keep.extend((thunk, ty))
            else:
                callback = _public_callback(spec, holder, host_call_price)
                self.linker.define_func("wes", spec.name, ty, callback, access_caller=True)

"""The few raw wasmtime C-API entry points the engine uses, on private ctypes handles.

wasmtime-py's public path costs tens of times more per call crossing (docs/HOT_PATH.md).
Host functions on the raw path are engine._native's C trampolines (engine/native/),
bound here with `wasmtime_linker_define_func_unchecked`; the native module is loaded
against the very library wasmtime-py loaded. Rules that keep the raw path safe
(WASMTIME_NOTES.md): trampolines catch every failure and return a trap; every
pointer/length is bounds-checked as unsigned offsets before memory is touched; a
handle is only used with its own store. argtypes are set on our own CDLL handle, never
on wasmtime-py's shared function objects.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_bool, c_char_p, c_size_t, c_void_p
from types import ModuleType
from typing import Any

import wasmtime
from wasmtime import _bindings as b
from wasmtime import _ffi

from engine.abi import check_native_table
from engine.fees import CATEGORIES

native: ModuleType | None  # engine._native, when it was built
try:
    from engine import _native as native
except ImportError:  # installed without a C compiler: the public-API host path serves
    native = None

_dll = ctypes.CDLL(str(_ffi.filename))


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    f = getattr(_dll, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f  # type: ignore[no-any-return]


bindings = b  # the pooling-allocator setters are used as wasmtime-py declares them
Extern = b.wasmtime_extern_t
Instance = b.wasmtime_instance_t
Memory = b.wasmtime_memory_t
Func = b.wasmtime_func_t
TrapPtr = POINTER(b.wasm_trap_t)
ContextPtr = POINTER(b.wasmtime_context_t)

if native is not None:
    native.load(str(_ffi.filename), ctypes.sizeof(Extern), ctypes.sizeof(Func))
    check_native_table(native.FUNCTIONS, native.CAPABILITIES)
    if native.CATEGORIES != CATEGORIES:
        raise RuntimeError(f"engine._native's fee categories {native.CATEGORIES} != {CATEGORIES}")

# (linker, module, module_len, name, name_len, functype, callback, env, finalizer)
linker_define_func_unchecked = _fn(
    "wasmtime_linker_define_func_unchecked", c_void_p,
    c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_void_p, c_void_p, c_void_p, c_void_p,
)
memory_data_size = _fn(
    "wasmtime_memory_data_size", c_size_t, c_void_p, POINTER(b.wasmtime_memory_t)
)

# The per-call entry points again, on a PyDLL handle without argtypes: no argument
# conversion and no GIL round trip (half the cost of a call). They return in
# nanoseconds, so keeping the GIL costs nothing. Callers pass ctypes objects only (a
# c_void_p context, byref() pointers, c_uint64 values): a bare Python int would be
# passed as a C int. None of them runs wasm (the epoch ticker needs the GIL then).
_pydll = ctypes.PyDLL(str(_ffi.filename))


def _fast(name: str, restype: Any) -> Any:
    f = getattr(_pydll, name)
    f.restype = restype
    return f


fast_get_fuel = _fast("wasmtime_context_get_fuel", c_void_p)
fast_set_fuel = _fast("wasmtime_context_set_fuel", c_void_p)
fast_memory_data_size = _fast("wasmtime_memory_data_size", c_size_t)
fast_export_get = _fast("wasmtime_instance_export_get", c_bool)
fast_memory_data = _fast("wasmtime_memory_data", c_size_t)
fast_memory_grow = _fast("wasmtime_memory_grow", c_void_p)
# Runs no wasm: the policy rejects start functions.
fast_instantiate_pre = _fast("wasmtime_instance_pre_instantiate", c_void_p)

config_strategy_set = _fn("wasmtime_config_strategy_set", None, c_void_p, ctypes.c_uint8)

STRATEGY_CRANELIFT = 1
STRATEGY_WINCH = 2


def take_error(err: int) -> wasmtime.WasmtimeError:
    """Wrap (and take ownership of) a wasmtime_error_t* returned by a raw call."""
    return wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, POINTER(b.wasmtime_error_t)))


def take_trap(trap: int) -> wasmtime.Trap:
    """Wrap (and take ownership of) a wasm_trap_t* returned by a raw call."""
    return wasmtime.Trap._from_ptr(ctypes.cast(trap, TrapPtr))

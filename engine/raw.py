"""The few raw wasmtime C-API entry points the hot path uses, on a private ctypes handle.

wasmtime-py's public path costs ~6-20 µs per call crossing; these cost ~0.3 µs.
Rules that keep them safe (WASMTIME_NOTES.md): every callback catches everything
and returns a trap; callback thunks live as long as the engine; every
pointer/length is bounds-checked as unsigned offsets before memory is touched; a
handle is only used with its own store. argtypes are set on our own CDLL handle,
never on wasmtime-py's shared function objects.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_bool, c_char_p, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any

import wasmtime
from wasmtime import _bindings as b
from wasmtime import _ffi

_dll = ctypes.CDLL(str(_ffi.filename))


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    f = getattr(_dll, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f  # type: ignore[no-any-return]


# An unchecked host callback: (env, caller, args_and_results, len) -> trap pointer or 0.
# Arguments are read through a uint32 view: ValRaw is 16 bytes, so arg i is at [4*i].
HOST_CALLBACK = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, POINTER(c_uint32), c_size_t)
FINALIZER = ctypes.CFUNCTYPE(None, c_void_p)

bindings = b  # the pooling-allocator setters are used as wasmtime-py declares them
Extern = b.wasmtime_extern_t
Instance = b.wasmtime_instance_t
Memory = b.wasmtime_memory_t
Func = b.wasmtime_func_t
ValRaw = b.wasmtime_val_raw_t
TrapPtr = POINTER(b.wasm_trap_t)

linker_define_func_unchecked = _fn(
    "wasmtime_linker_define_func_unchecked", c_void_p,
    c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_void_p, HOST_CALLBACK, c_void_p,
    FINALIZER,
)
instance_pre_instantiate = _fn(
    "wasmtime_instance_pre_instantiate", c_void_p,
    c_void_p, c_void_p, POINTER(Instance), POINTER(TrapPtr),
)
instance_export_get = _fn(
    "wasmtime_instance_export_get", c_bool,
    c_void_p, POINTER(Instance), c_char_p, c_size_t, POINTER(Extern),
)
func_call_unchecked = _fn(
    "wasmtime_func_call_unchecked", c_void_p,
    c_void_p, POINTER(b.wasmtime_func_t), POINTER(ValRaw), c_size_t, POINTER(TrapPtr),
)
caller_context = _fn("wasmtime_caller_context", c_void_p, c_void_p)
context_get_fuel = _fn("wasmtime_context_get_fuel", c_void_p, c_void_p, POINTER(c_uint64))
context_set_fuel = _fn("wasmtime_context_set_fuel", c_void_p, c_void_p, c_uint64)
context_set_epoch_deadline = _fn(
    "wasmtime_context_set_epoch_deadline", None, c_void_p, c_uint64
)
memory_data = _fn("wasmtime_memory_data", c_size_t, c_void_p, POINTER(b.wasmtime_memory_t))
memory_data_size = _fn(
    "wasmtime_memory_data_size", c_size_t, c_void_p, POINTER(b.wasmtime_memory_t)
)

# The per-call entry points again, on a PyDLL handle without argtypes: no argument
# conversion and no GIL round trip (~0.15 µs a call instead of ~0.35). They return in
# nanoseconds, so keeping the GIL costs nothing. Callers pass ctypes objects only (a
# c_void_p context, byref() pointers, c_uint64 values): a bare Python int would be
# passed as a C int. Never used for calls that run wasm (the epoch ticker needs the GIL).
_pydll = ctypes.PyDLL(str(_ffi.filename))


def _fast(name: str, restype: Any) -> Any:
    f = getattr(_pydll, name)
    f.restype = restype
    return f


fast_get_fuel = _fast("wasmtime_context_get_fuel", c_void_p)
fast_set_fuel = _fast("wasmtime_context_set_fuel", c_void_p)
fast_set_epoch_deadline = _fast("wasmtime_context_set_epoch_deadline", None)
fast_memory_data_size = _fast("wasmtime_memory_data_size", c_size_t)
fast_export_get = _fast("wasmtime_instance_export_get", c_bool)
fast_memory_data = _fast("wasmtime_memory_data", c_size_t)
# Runs no wasm: the policy rejects start functions.
fast_instantiate_pre = _fast("wasmtime_instance_pre_instantiate", c_void_p)
# Runs wasm: releases the GIL (a CDLL function), but still without argtypes.
fast_func_call = _dll["wasmtime_func_call_unchecked"]  # [] makes a fresh function object
fast_func_call.restype = c_void_p

trap_new = _fn("wasmtime_trap_new", c_size_t, c_char_p, c_size_t)
error_delete = _fn("wasmtime_error_delete", None, c_void_p)
config_strategy_set = _fn("wasmtime_config_strategy_set", None, c_void_p, ctypes.c_uint8)

STRATEGY_CRANELIFT = 1
STRATEGY_WINCH = 2


def new_trap(message: str) -> int:
    """A trap for wasmtime to own and raise (the callback returns its address)."""
    data = message.encode("utf-8", "replace")
    return int(trap_new(data, len(data)))


def take_error(err: int) -> wasmtime.WasmtimeError:
    """Wrap (and take ownership of) a wasmtime_error_t* returned by a raw call."""
    return wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, POINTER(b.wasmtime_error_t)))


def no_finalizer(_env: int | None) -> None:
    return None


NO_FINALIZER = FINALIZER(no_finalizer)

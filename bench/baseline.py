"""The baseline: a straightforward host on wasmtime-py's public API, as a newcomer writes it.

Fresh Store per transaction, fuel on, `Linker.define_func` host functions that reach
memory through `caller["memory"]`, a dict as storage. No raw bindings, no pools.
It implements only what the token contract imports, with the engine's prices, so the
figure is the same contract doing the same work through the documented API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import wasmtime

FUEL = 10_000_000


class Revert(Exception):
    pass


@dataclass
class Tx:
    caller: bytes
    input: bytes
    storage: dict[bytes, bytes]
    writes: dict[bytes, bytes] = field(default_factory=dict)
    events: list[tuple[bytes, bytes]] = field(default_factory=list)
    return_data: bytes = b""
    fee: int = 0


class PublicApiHost:
    """The token contract's imports through Linker.define_func; one Tx at a time."""

    def __init__(self, code: bytes) -> None:
        cfg = wasmtime.Config()
        cfg.consume_fuel = True
        self.engine = wasmtime.Engine(cfg)
        self.module = wasmtime.Module(self.engine, code)
        self.linker = wasmtime.Linker(self.engine)
        self.tx: Tx | None = None
        i32 = wasmtime.ValType.i32()
        define = self.linker.define_func
        define("wes", "input_size", wasmtime.FuncType([], [i32]), self.input_size,
               access_caller=True)
        define("wes", "input_read", wasmtime.FuncType([i32], []), self.input_read,
               access_caller=True)
        define("wes", "return_data", wasmtime.FuncType([i32, i32], []), self.return_data,
               access_caller=True)
        define("wes", "revert", wasmtime.FuncType([i32, i32], []), self.revert,
               access_caller=True)
        define("wes", "emit_event", wasmtime.FuncType([i32] * 4, []), self.emit_event,
               access_caller=True)
        define("wes", "storage_read", wasmtime.FuncType([i32] * 4, [i32]), self.storage_read,
               access_caller=True)
        define("wes", "storage_write", wasmtime.FuncType([i32] * 4, []), self.storage_write,
               access_caller=True)
        define("wes", "caller", wasmtime.FuncType([i32], [i32]), self.caller,
               access_caller=True)

    # -- host functions (pointers bounds-checked as unsigned offsets) ---------------------

    def _mem(self, caller: wasmtime.Caller) -> wasmtime.Memory:
        mem = caller["memory"]
        assert isinstance(mem, wasmtime.Memory)
        return mem

    def _read(self, caller: wasmtime.Caller, ptr: int, length: int) -> bytes:
        ptr, length = ptr & 0xFFFFFFFF, length & 0xFFFFFFFF
        mem = self._mem(caller)
        if ptr + length > mem.data_len(caller):
            raise wasmtime.WasmtimeError("pointer outside memory")
        return bytes(mem.read(caller, ptr, ptr + length))

    def _write(self, caller: wasmtime.Caller, ptr: int, data: bytes) -> None:
        ptr &= 0xFFFFFFFF
        mem = self._mem(caller)
        if ptr + len(data) > mem.data_len(caller):
            raise wasmtime.WasmtimeError("pointer outside memory")
        mem.write(caller, data, ptr)

    def _charge(self, amount: int) -> None:
        assert self.tx is not None
        self.tx.fee += amount

    def input_size(self, caller: wasmtime.Caller) -> int:
        assert self.tx is not None
        self._charge(200)
        return len(self.tx.input)

    def input_read(self, caller: wasmtime.Caller, dst: int) -> None:
        assert self.tx is not None
        self._charge(200 + 2 * len(self.tx.input))
        self._write(caller, dst, self.tx.input)

    def return_data(self, caller: wasmtime.Caller, ptr: int, length: int) -> None:
        assert self.tx is not None
        self._charge(200 + 2 * length)
        self.tx.return_data = self._read(caller, ptr, length)

    def revert(self, caller: wasmtime.Caller, ptr: int, length: int) -> None:
        raise Revert(self._read(caller, ptr, length).decode("utf-8", "replace"))

    def emit_event(self, caller: wasmtime.Caller, tp: int, tl: int, dp: int, dl: int) -> None:
        assert self.tx is not None
        self._charge(200 + 500 + 10 * (tl + dl))
        self.tx.events.append((self._read(caller, tp, tl), self._read(caller, dp, dl)))

    def storage_read(self, caller: wasmtime.Caller, kp: int, kl: int, dst: int, cap: int) -> int:
        assert self.tx is not None
        key = self._read(caller, kp, kl)
        self._charge(200 + 2_000 + 4 * kl)
        value = self.tx.writes.get(key, self.tx.storage.get(key))
        if value is None:
            return -1
        copied = value[: cap & 0xFFFFFFFF]
        self._charge(4 * len(copied))
        self._write(caller, dst, copied)
        return len(value)

    def storage_write(self, caller: wasmtime.Caller, kp: int, kl: int, vp: int, vl: int) -> None:
        assert self.tx is not None
        self._charge(200 + 5_000 + 40 * (kl + vl))
        self.tx.writes[self._read(caller, kp, kl)] = self._read(caller, vp, vl)

    def caller(self, caller: wasmtime.Caller, dst: int) -> int:
        assert self.tx is not None
        self._charge(200 + 2 * len(self.tx.caller))
        self._write(caller, dst, self.tx.caller)
        return len(self.tx.caller)

    # -- one transaction --------------------------------------------------------------------

    def call(self, function: str, tx: Tx) -> str:
        """Run `function` for `tx` in a fresh Store; return the status."""
        self.tx = tx
        store = wasmtime.Store(self.engine)
        store.set_fuel(FUEL)
        try:
            instance = self.linker.instantiate(store, self.module)
            func = instance.exports(store)[function]
            assert isinstance(func, wasmtime.Func)
            func(store)
            status = "ok"
        except Revert:  # wasmtime-py re-raises a host function's own exception
            status = "reverted"
        except wasmtime.Trap as exc:
            status = "out_of_fee" if exc.trap_code == wasmtime.TrapCode.OUT_OF_FUEL else "trap"
        except wasmtime.WasmtimeError:
            status = "trap"
        tx.fee += FUEL - store.get_fuel()
        self.tx = None
        return status


def host_loop_baseline(code: bytes) -> tuple[wasmtime.Store, Any]:
    """A plain public-API `wes.block_height` (no caller access) for a host-loop module."""
    engine = wasmtime.Engine(wasmtime.Config())
    module = wasmtime.Module(engine, code)
    linker = wasmtime.Linker(engine)
    linker.define_func("wes", "block_height", wasmtime.FuncType([], [wasmtime.ValType.i64()]),
                       lambda: 7)
    store = wasmtime.Store(engine)
    instance = linker.instantiate(store, module)
    return store, instance.exports(store)["run"]

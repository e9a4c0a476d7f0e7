"""Compiled contracts and warm instances: each instance serves exactly one execution.

A warm instance is made ahead of time so a job skips instantiation. Instances made
together share one Store (creating and dropping a Store costs more than an
instance), but never memory, globals or tables: each instance has its own, and
each serves exactly one execution before it is dropped. The Store goes when its
last instance does.
"""

from __future__ import annotations

import ctypes
import gc
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import wasmtime

from engine import raw
from engine.errors import ContractTrap, ExecutionError, InternalError, trap_cause
from engine.instrument import DEPTH_EXPORT
from engine.model import ModuleInfo

_SIX = ctypes.c_size_t(6)  # len(b"memory")
INSTANTIATE_FUEL = 1_000_000


@dataclass(slots=True)
class CompiledContract:
    code_hash: str
    module: wasmtime.Module
    pre: wasmtime.InstancePre
    info: ModuleInfo
    warm: deque[WarmInstance] = field(default_factory=deque)
    instantiation_traps: bool = False  # (a segment out of bounds: every instantiation does)


@dataclass(slots=True)
class WarmInstance:
    store: wasmtime.Store
    ctx: ctypes.c_void_p
    instance: raw.Instance
    memory: raw.Memory
    memory_base: int
    memory_size: int
    instantiate_fuel: int  # what instantiating it consumed (passive segments): charged
    # Addresses for the native host (the structs above live as long as this object).
    ctx_addr: int = 0
    instance_addr: int = 0
    memory_addr: int = 0

    def __post_init__(self) -> None:
        self.ctx_addr = self.ctx.value or 0
        self.instance_addr = ctypes.addressof(self.instance)
        self.memory_addr = ctypes.addressof(self.memory)

    def call_depth(self) -> int:
        """The instrumentation's call-depth counter: frames on the stack (after a trap)."""
        item = raw.Extern()
        name = DEPTH_EXPORT.encode()
        if not raw.fast_export_get(self.ctx, ctypes.byref(self.instance), name,
                                   ctypes.c_size_t(len(name)), ctypes.byref(item)):
            return 0
        value = raw.bindings.wasmtime_val_t()
        raw.bindings.wasmtime_global_get(ctypes.cast(self.ctx, raw.ContextPtr),
                                         ctypes.byref(item.of.global_), ctypes.byref(value))
        return max(0, int(value.of.i32))

    def entry(self, name: bytes) -> raw.Func | None:
        item = raw.Extern()
        if not raw.fast_export_get(self.ctx, ctypes.byref(self.instance), name,
                                   ctypes.c_size_t(len(name)), ctypes.byref(item)):
            return None
        return item.of.func


class InstancePool:
    """Warm instances for the most recently used contracts (an LRU of `contracts`)."""

    def __init__(self, engine: wasmtime.Engine, per_contract: int, contracts: int,
                 memory_bytes: int, table_elements: int) -> None:
        self.engine = engine
        self.per_contract = per_contract
        self.contracts = contracts
        self.memory_bytes = memory_bytes
        self.table_elements = table_elements
        self.hot: OrderedDict[str, CompiledContract] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def instantiate(self, contract: CompiledContract, count: int = 1) -> list[WarmInstance]:
        """`count` fresh instances of the contract in one new Store."""
        try:
            return self._instantiate(contract, count)
        except InternalError:
            # Out of pooling-allocator slots: free every warm instance, and any instance
            # only a reference cycle still holds, and retry once.
            self.clear(keep_lru=True)
            gc.collect()
            return self._instantiate(contract, count)

    def _instantiate(self, contract: CompiledContract, count: int) -> list[WarmInstance]:
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=self.memory_bytes, table_elements=self.table_elements,
                         instances=count, tables=count, memories=count)
        # Instantiating a passive element segment consumes fuel: give it some, and let the
        # execution pay what it took (the same for every instance of the module).
        store.set_fuel(INSTANTIATE_FUEL)
        store.set_epoch_deadline(1 << 62)  # instantiation runs no code; each call sets its own
        ctx = ctypes.cast(store._context(), ctypes.c_void_p)
        pre = ctypes.cast(contract.pre.ptr(), ctypes.c_void_p)
        made = []
        byref = ctypes.byref
        left = INSTANTIATE_FUEL
        for _ in range(count):
            instance = raw.Instance()
            trap = raw.TrapPtr()
            err = raw.fast_instantiate_pre(pre, ctx, byref(instance), byref(trap))
            spent, left = left - store.get_fuel(), store.get_fuel()
            if trap:  # a segment out of bounds: the module's fault, not the engine's
                contract.instantiation_traps = True
                trapped = wasmtime.Trap._from_ptr(trap)  # takes ownership and frees it
                raise ContractTrap(f"instantiation trapped: {trap_cause(trapped.message)}",
                                   "instantiation")
            if err:
                detail = str(raw.take_error(err)).splitlines()
                raise InternalError(f"instantiating contract {contract.code_hash[:12]} failed: "
                                    f"{detail[0] if detail else ''}")
            item = raw.Extern()
            if not raw.fast_export_get(ctx, byref(instance), b"memory", _SIX, byref(item)):
                raise InternalError("instance has no 'memory' export")
            memory = item.of.memory
            made.append(WarmInstance(store, ctx, instance, memory,
                                     raw.fast_memory_data(ctx, byref(memory)),
                                     raw.fast_memory_data_size(ctx, byref(memory)), spent))
        return made

    def acquire(self, contract: CompiledContract) -> WarmInstance:
        self._touch(contract)
        if contract.warm:
            self.hits += 1
            return contract.warm.popleft()
        self.misses += 1
        # A busy executor never idles to refill; a Store's worth at once is much cheaper
        # per instance than one Store each (docs/HOT_PATH.md).
        fresh = self.instantiate(contract, max(1, min(self.per_contract, 8)))
        contract.warm.extend(fresh[1:])
        return fresh[0]

    def _touch(self, contract: CompiledContract) -> None:
        if self.contracts <= 0:
            return
        self.hot[contract.code_hash] = contract
        self.hot.move_to_end(contract.code_hash)
        while len(self.hot) > self.contracts:
            _, cold = self.hot.popitem(last=False)
            cold.warm.clear()

    def refill(self, budget: int = 64) -> int:
        """Make up to `budget` warm instances, hottest contracts first. A contract is
        topped up once half its warm instances are used, all in one Store: one at a
        time (after every single-tx request) costs several times more per instance."""
        made = 0
        for contract in list(reversed(self.hot.values())):
            if len(contract.warm) > self.per_contract // 2:
                continue
            need = min(self.per_contract - len(contract.warm), budget - made)
            if need > 0:
                try:
                    contract.warm.extend(self.instantiate(contract, need))
                except ExecutionError:
                    del self.hot[contract.code_hash]  # its jobs will report why
                    continue
                made += need
        return made

    def usage(self) -> dict[str, int]:
        """Contracts kept warm, their warm instances, and the linear memory those hold."""
        instances = [w for contract in self.hot.values() for w in contract.warm]
        memory = sum(raw.fast_memory_data_size(w.ctx, ctypes.byref(w.memory))
                     for w in instances)
        return {"contracts": len(self.hot), "instances": len(instances),
                "module_memory_bytes": memory}

    def clear(self, keep_lru: bool = False) -> None:
        for contract in self.hot.values():
            contract.warm.clear()
        if not keep_lru:
            self.hot.clear()

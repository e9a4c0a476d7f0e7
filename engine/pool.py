"""Compiled contracts and warm instances: each instance serves exactly one execution.

A warm instance is a fresh Store (with limits) holding one instance of the module,
made ahead of time so a job skips instantiation. It is never returned: after its
execution the Store is dropped, so no memory, global or table state passes from one
job to the next.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import wasmtime

from engine import raw
from engine.errors import InternalError
from engine.policy import ModuleInfo


@dataclass(slots=True)
class CompiledContract:
    code_hash: str
    module: wasmtime.Module
    pre: wasmtime.InstancePre
    info: ModuleInfo
    warm: deque[WarmInstance] = field(default_factory=deque)


@dataclass(slots=True)
class WarmInstance:
    store: wasmtime.Store
    ctx: int
    instance: raw.Instance
    memory: raw.Memory

    def entry(self, name: bytes) -> raw.Func | None:
        item = raw.Extern()
        if not raw.instance_export_get(self.ctx, ctypes.byref(self.instance), name, len(name),
                                       ctypes.byref(item)):
            return None
        return item.of.func


class InstancePool:
    """Warm instances for the most recently used contracts (an LRU of `size` contracts)."""

    def __init__(self, engine: wasmtime.Engine, per_contract: int, contracts: int,
                 store_limits: dict[str, int]) -> None:
        self.engine = engine
        self.per_contract = per_contract
        self.contracts = contracts
        self.store_limits = store_limits
        self.hot: OrderedDict[str, CompiledContract] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def instantiate(self, contract: CompiledContract) -> WarmInstance:
        store = wasmtime.Store(self.engine)
        store.set_limits(**self.store_limits)
        ctx = ctypes.cast(store._context(), ctypes.c_void_p).value or 0
        instance = raw.Instance()
        trap = raw.TrapPtr()
        err = raw.instance_pre_instantiate(
            ctypes.cast(contract.pre.ptr(), ctypes.c_void_p), ctx, ctypes.byref(instance),
            ctypes.byref(trap),
        )
        if err or trap:
            if err:
                raw.error_delete(err)
            if trap:
                wasmtime.Trap._from_ptr(trap)  # takes ownership and frees it
            raise InternalError(f"instantiating contract {contract.code_hash[:12]} failed "
                                "(memory or table over the store limits?)")
        item = raw.Extern()
        if not raw.instance_export_get(ctx, ctypes.byref(instance), b"memory", 6,
                                       ctypes.byref(item)):
            raise InternalError("instance has no 'memory' export")
        return WarmInstance(store, ctx, instance, item.of.memory)

    def acquire(self, contract: CompiledContract) -> WarmInstance:
        self._touch(contract)
        if contract.warm:
            self.hits += 1
            return contract.warm.popleft()
        self.misses += 1
        return self.instantiate(contract)

    def _touch(self, contract: CompiledContract) -> None:
        if self.contracts <= 0:
            return
        self.hot[contract.code_hash] = contract
        self.hot.move_to_end(contract.code_hash)
        while len(self.hot) > self.contracts:
            _, cold = self.hot.popitem(last=False)
            cold.warm.clear()

    def refill(self, budget: int = 64) -> int:
        """Instantiate up to `budget` warm instances, hottest contracts first."""
        made = 0
        for contract in reversed(self.hot.values()):
            while len(contract.warm) < self.per_contract and made < budget:
                contract.warm.append(self.instantiate(contract))
                made += 1
        return made

    def clear(self) -> None:
        for contract in self.hot.values():
            contract.warm.clear()
        self.hot.clear()

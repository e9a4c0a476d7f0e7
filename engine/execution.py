"""One execution's state: fee meter, linear-memory access, buffered storage, outputs.

A host call runs between two fuel syncs: first the instructions wasm ran since the
last crossing are charged (fuel spent × instruction price), last the rest of the
budget goes back to wasmtime as fuel. So fuel and host charges draw on one budget,
deterministically. Grown memory pages are charged when the host next looks at
memory (it reads the size anyway) and when the call returns.
"""

from __future__ import annotations

import ctypes
from ctypes import c_uint64
from typing import Any

from config import PolicyLimits
from engine import raw
from engine.errors import ContractTrap, InternalError
from engine.fees import FeeMeter, FeeSchedule
from engine.model import Job
from engine.state import StateView

PAGE = 65_536
_string_at = ctypes.string_at
_memmove = ctypes.memmove


class Execution:
    """Everything host functions see; lives for exactly one call of one instance."""

    __slots__ = (
        "address", "caller", "ctx", "denied", "events", "fee_price", "fuel_cell", "fuel_granted",
        "fuel_ref", "input", "job", "limits", "logs", "mem_ref", "memory", "meter",
        "pages_charged", "pending", "read_set", "return_data", "schedule", "state", "writes",
    )

    def __init__(
        self,
        job: Job,
        state: StateView,
        schedule: FeeSchedule,
        limits: PolicyLimits,
        denied: frozenset[str],
    ) -> None:
        self.job = job
        self.state = state
        self.schedule = schedule
        self.limits = limits
        self.denied = denied
        self.input = job.input
        self.address = job.contract.encode()
        self.caller = job.context.caller.encode()
        self.meter = FeeMeter(job.fee_limit)
        self.fee_price = schedule.instruction
        self.fuel_granted = 0
        self.pages_charged = 0
        self.ctx: int = 0
        self.memory: raw.Memory | None = None
        self.mem_ref: Any = None
        self.fuel_cell = c_uint64()
        self.fuel_ref = ctypes.byref(self.fuel_cell)
        self.pending: BaseException | None = None
        self.return_data = b""
        self.events: list[tuple[bytes, bytes]] = []
        self.logs: list[bytes] = []
        self.read_set: dict[bytes, int] = {}
        self.writes: dict[bytes, bytes | None] = {}

    # -- fuel: one budget with the meter -------------------------------------------------

    def grant_fuel(self, ctx: int) -> None:
        """Give wasm the budget left, as fuel."""
        self.fuel_granted = self.meter.left // self.fee_price
        err = raw.context_set_fuel(ctx, self.fuel_granted)
        if err:
            raw.error_delete(err)
            raise InternalError("wasmtime refused set_fuel")

    def settle_fuel(self, ctx: int) -> None:
        """Charge the instructions run since the last grant."""
        err = raw.context_get_fuel(ctx, self.fuel_ref)
        if err:
            raw.error_delete(err)
            raise InternalError("wasmtime refused get_fuel")
        left = self.fuel_cell.value
        spent = self.fuel_granted - left
        self.fuel_granted = left
        if spent:
            self.meter.consume(spent * self.fee_price, "instructions")

    def charge_growth(self, size: int) -> None:
        """Charge pages grown since the last look (memory.grow cannot shrink)."""
        pages = size // PAGE
        if pages > self.pages_charged:
            grown = pages - self.pages_charged
            self.pages_charged = pages
            self.meter.consume(grown * self.schedule.memory_page, "memory", "memory.grow")

    # -- linear memory, bounds-checked as unsigned offsets ------------------------------

    def read(self, ptr: int, length: int, what: str) -> bytes:
        ctx, mem = self.ctx, self.mem_ref
        size = raw.memory_data_size(ctx, mem)
        if size > self.pages_charged * PAGE:
            self.charge_growth(size)
        if ptr + length > size:
            raise ContractTrap(f"wes.{what}: bytes {ptr}..{ptr + length} are outside memory",
                               "memory_out_of_bounds")
        return _string_at(raw.memory_data(ctx, mem) + ptr, length)

    def write(self, ptr: int, data: bytes, what: str) -> None:
        ctx, mem = self.ctx, self.mem_ref
        size = raw.memory_data_size(ctx, mem)
        if size > self.pages_charged * PAGE:
            self.charge_growth(size)
        if ptr + len(data) > size:
            raise ContractTrap(f"wes.{what}: bytes {ptr}..{ptr + len(data)} are outside memory",
                               "memory_out_of_bounds")
        _memmove(raw.memory_data(ctx, mem) + ptr, data, len(data))

    # -- storage: buffered writes, versioned reads ---------------------------------------

    def storage_get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        found = self.state.get(self.job.contract, key)
        if found is None:
            self.read_set.setdefault(key, 0)
            return None
        value, version = found
        self.read_set.setdefault(key, version)
        return value

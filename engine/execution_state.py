"""One execution's state: fee meter, linear-memory access, buffered storage, outputs.

This is the reference implementation, used with the public-API host functions;
engine._native.ExecutionState (engine/native/meter.c) has the same interface and
semantics for the raw path: `consume`/`exhaust`/`left`/`limit`/`used`/`breakdown`,
`attach(warm, pages)`, `settle()` and the outputs.

Fuel and host charges draw on one budget. wasmtime gets the whole budget as fuel
once, at the start; every host call first charges the instructions wasm ran since
the last look (fuel spent × instruction price), then its own prices, against the
meter. Fuel is never topped down after a host charge (that crossing would cost more
than the host call): wasm may run past the budget until the next point where the engine looks —
the next host call, a trap, or the return — and there the meter raises OutOfFee with
the same status, `used == limit` and breakdown as a stop at the exact instruction
would give, because nothing wasm does in between is observable. Grown memory pages
are charged when the host next looks past the memory size it knew, and at return.
"""

from __future__ import annotations

import ctypes
from ctypes import c_uint64
from typing import TYPE_CHECKING, Any

from config import PolicyLimits
from engine import raw
from engine.errors import ContractTrap, InternalError
from engine.fees import FeeMeter, FeeSchedule, paid_pages
from engine.model import Job
from engine.state import StateView

if TYPE_CHECKING:
    from engine.pool import WarmInstance

PAGE = 65_536
TRIM_SLACK = 4_096  # fuel a host charge may leave granted beyond an eighth (see trim_fuel)
_string_at = ctypes.string_at
_memmove = ctypes.memmove
_get_fuel, _set_fuel, _memory_size = raw.fast_get_fuel, raw.fast_set_fuel, raw.fast_memory_data_size
_memory_grow = raw.fast_memory_grow


class ExecutionState:
    """Everything host functions see; lives for exactly one call of one instance."""

    __slots__ = (
        "address", "caller", "calls", "ctx", "denied", "events", "fee_price", "fuel_cell",
        "fuel_granted", "fuel_ref", "input", "job", "last_result", "limits", "logs",
        "max_pages", "mem_base", "mem_ref", "mem_size", "memory", "meter", "pages_charged",
        "pending", "read_set", "return_data", "schedule", "state", "write_bytes", "writes",
    )

    def __init__(
        self,
        job: Job,
        state: StateView,
        schedule: FeeSchedule,
        limits: PolicyLimits,
        denied: frozenset[str],
        fuel_cell: c_uint64,
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
        self.max_pages = 0
        self.ctx: ctypes.c_void_p | None = None
        self.memory: raw.Memory | None = None
        self.mem_ref: Any = None
        self.mem_base = 0
        self.mem_size = 0
        self.fuel_cell = fuel_cell
        self.fuel_ref = ctypes.byref(fuel_cell)
        self.pending: BaseException | None = None
        self.return_data = b""
        self.events: list[tuple[bytes, bytes]] = []
        self.logs: list[bytes] = []
        self.read_set: dict[bytes, int] = {}
        self.writes: dict[bytes, bytes | None] = {}
        self.write_bytes = 0  # keys + values buffered (max_write_bytes)
        self.calls: Any = None  # the transaction's engine.calls.Calls
        self.last_result = b""  # what wes.result_read copies: the last call's result

    def attach(self, warm: WarmInstance, pages: int, max_pages: int) -> None:
        """Bind to a warm instance whose `pages` initial pages are paid for and whose
        memory may grow to `max_pages` (its declared maximum, within the limit). Memory never
        moves (the engine sets memory_may_move off) and never shrinks, so its base is
        fixed and a size seen before is a safe lower bound: only an access past it asks
        wasmtime again."""
        self.ctx, self.memory = warm.ctx, warm.memory
        self.mem_ref = ctypes.byref(warm.memory)
        self.mem_base, self.mem_size = warm.memory_base, warm.memory_size
        self.pages_charged = pages
        self.max_pages = max_pages

    # -- the meter -----------------------------------------------------------------------

    @property
    def limit(self) -> int:
        return self.meter.limit

    @property
    def used(self) -> int:
        return self.meter.used

    @property
    def left(self) -> int:
        return self.meter.left

    @property
    def breakdown(self) -> dict[str, int]:
        return dict(self.meter.breakdown)

    def consume(self, amount: int, category: str, reason: str | None = None) -> None:
        self.meter.consume(amount, category, reason)

    def exhaust(self, category: str) -> None:
        self.meter.exhaust(category)

    # -- fuel: one budget with the meter -------------------------------------------------

    def enter(self, base: int, name: str) -> None:
        """A host call begins: charge instructions run since the last grant, then the
        call's base price (fused: this runs on every crossing)."""
        if _get_fuel(self.ctx, self.fuel_ref):
            raise InternalError("wasmtime refused get_fuel")
        left = self.fuel_cell.value
        spent = (self.fuel_granted - left) * self.fee_price
        self.fuel_granted = left
        meter = self.meter
        if spent + base <= meter.limit - meter.used:
            meter.used += spent + base
            breakdown = meter.breakdown
            breakdown["instructions"] += spent
            breakdown["host_calls"] += base
        else:
            meter.consume(spent, "instructions")
            meter.consume(base, "host_calls", name)

    def fuel_cap(self) -> int:
        """The fuel the fee left buys, and one more: wasmtime traps once the fuel used
        reaches what was granted, and sees a run past it only at a loop header or a call,
        so with the one more every run past what the fee buys is seen (a trap, or all the
        fuel gone at the next look) and ends out_of_fee, and one the fee pays for never
        traps (engine/native/meter.c's ex_fuel_cap is the same)."""
        return (self.meter.limit - self.meter.used) // self.fee_price + 1

    def grant_fuel(self) -> None:
        """Give wasm the budget left, as fuel (once, before the call)."""
        self.fuel_granted = self.fuel_cap()
        if _set_fuel(self.ctx, c_uint64(self.fuel_granted)):
            raise InternalError("wasmtime refused set_fuel")

    def trim_fuel(self) -> None:
        """After a host call: once the fuel granted exceeds what the fee left would buy by
        more than an eighth (and TRIM_SLACK), lower it to that (engine/native/trampolines.c's
        trim_fuel, the same rule): a charge does not lower the fuel granted before it."""
        cap = self.fuel_cap()
        if self.fuel_granted > cap + cap // 8 + TRIM_SLACK:
            if _set_fuel(self.ctx, c_uint64(cap)):
                raise InternalError("wasmtime refused set_fuel")
            self.fuel_granted = cap

    def cap_fuel(self) -> None:
        """After a call the callee's fee is charged here: wasm may not run past what is
        left (its fuel was granted before)."""
        if _get_fuel(self.ctx, self.fuel_ref):
            raise InternalError("wasmtime refused get_fuel")
        cap = self.fuel_cap()
        left = self.fuel_cell.value
        if left > cap:
            if _set_fuel(self.ctx, c_uint64(cap)):
                raise InternalError("wasmtime refused set_fuel")
            left = cap
        self.fuel_granted = left

    def settle(self) -> None:
        """Charge the instructions and pages used since the last look (on return, and on
        a wasm trap: the work before it is paid for too)."""
        if _get_fuel(self.ctx, self.fuel_ref):
            raise InternalError("wasmtime refused get_fuel")
        left = self.fuel_cell.value
        spent = self.fuel_granted - left
        self.fuel_granted = left
        if spent:
            self.meter.consume(spent * self.fee_price, "instructions")
        self.charge_growth(_memory_size(self.ctx, self.mem_ref))

    def charge_growth(self, size: int) -> None:
        """Charge pages grown since the last look (memory.grow cannot shrink), past the
        schedule's free pages."""
        pages = size // PAGE
        if pages > self.pages_charged:
            grown = paid_pages(self.schedule, pages) - paid_pages(self.schedule, self.pages_charged)
            self.pages_charged = pages
            self.meter.consume(grown * self.schedule.memory_page, "memory", "memory.grow")

    # -- linear memory, bounds-checked as unsigned offsets ------------------------------

    def _check(self, ptr: int, end: int, what: str) -> None:
        """Slow path: the access passes the cached size; ask again (charging growth)."""
        self.mem_size = _memory_size(self.ctx, self.mem_ref)
        self.charge_growth(self.mem_size)
        if end > self.mem_size:
            raise ContractTrap(f"wes.{what}: bytes {ptr}..{end} are outside memory",
                               "memory_out_of_bounds")

    def read(self, ptr: int, length: int, what: str) -> bytes:
        if ptr + length > self.mem_size:
            self._check(ptr, ptr + length, what)
        return _string_at(self.mem_base + ptr, length)

    def write(self, ptr: int, data: bytes, what: str) -> None:
        if ptr + len(data) > self.mem_size:
            self._check(ptr, ptr + len(data), what)
        _memmove(self.mem_base + ptr, data, len(data))

    # -- storage: buffered writes, versioned reads ---------------------------------------

    def storage_get(self, key: bytes) -> bytes | None:
        """Own writes first; a key read from the state for the first time joins the read
        set, within its cap, and is charged as such before it is fetched."""
        if key in self.writes:
            return self.writes[key]
        if key not in self.read_set:
            if len(self.read_set) >= self.limits.max_read_entries:
                raise ContractTrap(f"wes.storage_read: over {self.limits.max_read_entries} "
                                   "distinct keys read (max_read_entries)", "limit")
            self.meter.consume(self.schedule.storage_read_key, "storage_read",
                               "wes.storage_read")
        found = self.state.get(self.job.contract, key)
        if found is None:
            self.read_set.setdefault(key, 0)
            return None
        value, version = found
        self.read_set.setdefault(key, version)
        return value

    def read_declared(self, keys: tuple[bytes, ...]) -> None:
        """Read the job's declared keys before its contract runs, each as storage_get
        reads a key (charged, joining the read set)."""
        for key in keys:
            self.storage_get(key)

    def buffer_write(self, key: bytes, value: bytes | None, what: str) -> None:
        """Buffer a write (None removes), within the write set's caps."""
        limits = self.limits
        grown = len(key) + len(value or b"")
        if key in self.writes:
            grown -= len(key) + len(self.writes[key] or b"")
        elif len(self.writes) >= limits.max_write_entries:
            raise ContractTrap(f"{what}: over {limits.max_write_entries} keys written "
                               "(max_write_entries)", "limit")
        if self.write_bytes + grown > limits.max_write_bytes:
            raise ContractTrap(f"{what}: over {limits.max_write_bytes} bytes written "
                               "(max_write_bytes)", "limit")
        self.write_bytes += grown
        self.writes[key] = value

    # -- memory growth (the instrumentation's hook) --------------------------------------

    def memory_pages(self) -> int:
        return int(_memory_size(self.ctx, self.mem_ref)) // PAGE

    def grow(self, delta: int) -> int:
        """Grow by `delta` pages (within the limit, already charged); the old size."""
        previous = ctypes.c_uint64()
        if _memory_grow(self.ctx, self.mem_ref, ctypes.c_uint64(delta), ctypes.byref(previous)):
            raise InternalError("memory.grow failed within the limit")
        self.mem_size = _memory_size(self.ctx, self.mem_ref)
        return previous.value

"""WasmEngine: validate → compile (+cache) → warm instance → execute under fee and deadline."""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import wasmtime

from config import Settings
from engine import raw
from engine.abi import NOTHING_DENIED, VIEW_DENIED, capability_mask
from engine.admission import bringing_in, first_charges, refusal
from engine.calls import Calls
from engine.compiler import build_config, fingerprint
from engine.counters import EngineCounters
from engine.epoch import EpochTicker
from engine.errors import (
    ContractTrap,
    ExecutionError,
    InternalError,
    InvalidJob,
    OutOfFee,
    Rejected,
    Timeout,
    trap_cause,
)
from engine.execution_state import PAGE, ExecutionState
from engine.fees import FeeMeter, paid_pages
from engine.linking import CurrentExecution, HostLinker, native_host
from engine.loader import ContractLoader
from engine.model import FeeReport, Job, ModuleInfo, Result
from engine.pool import CompiledContract, InstancePool, WarmInstance
from engine.state import CodeSource, StateView

log = logging.getLogger("wesfarm.engine")
# The two implementations of one execution's state (engine/execution_state.py,
# engine/native/meter.c), and anything with a fee meter's limit/used/breakdown.
if TYPE_CHECKING:
    from engine._native import ExecutionState as NativeExecution

    AnyExecution = ExecutionState | NativeExecution
    Metered = FeeMeter | AnyExecution
TRAP_KINDS = {getattr(wasmtime.TrapCode, n): n.lower() for n in dir(wasmtime.TrapCode)
              if n.isupper()}


class WasmEngine:
    """One wasmtime engine, its compile caches and warm pools. Not thread-safe: one
    execution at a time (an executor process runs one)."""

    engine_type = "wasm"

    def __init__(self, settings: Settings, raw_calls: bool = True) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.schedule = settings.fees
        self.fingerprint = fingerprint(settings)
        self.engine = wasmtime.Engine(build_config(settings))
        self.slot = CurrentExecution()
        # raw_calls: engine._native's C host functions; else the public-API reference.
        if raw_calls and raw.native is None:
            log.warning("engine._native is not built (no C compiler at install): host "
                        "functions run on the public-API path (much slower: see the README)")
        self._calls: Calls | None = None  # the running transaction's call stack
        self._running: list[int] = []  # id() of the compiled contract of every frame
        self.host = (native_host(self.schedule, self.limits, self._native_call)
                     if raw_calls and raw.native is not None else None)
        self.linker = HostLinker(self.engine, self.slot, self.host, self.schedule.host_call)
        self.raw_calls = self.host is not None
        self.pool = InstancePool(self.engine, settings.instance_pool_size,
                                 settings.pooled_modules, self.limits.max_memory_pages * PAGE,
                                 self.limits.max_table_elements)
        self.metrics = EngineCounters()
        self.loader = ContractLoader(settings, self.engine, self.linker.linker, self.fingerprint,
                                     self.metrics)
        self.compiled = self.loader.compiled
        self.ticker = EpochTicker(self.engine, settings.epoch_tick_ms)
        self.ticker.start()
        weakref.finalize(self, self.ticker.stopped.set)
        self._fuel_cell = ctypes.c_uint64()  # get_fuel's out-parameter, shared by executions
        self._denied = {address: frozenset(caps)
                        for address, caps in settings.denied_capabilities.items()}
        self._masks: dict[tuple[str, str], int] = {}
        self._deadline_ticks: dict[int, int] = {}

    # -- code ------------------------------------------------------------------------

    def validate(self, code: bytes) -> ModuleInfo:
        """Policy, compile budget and a compile behind the wall; raise Rejected/InvalidJob
        naming the problem. The compiled artifact is kept (compiling leaves the job path)."""
        return self.loader.validate(code)

    def precompile(self, code: bytes) -> str:
        """Validate, compile and keep the verified artifact; the code hash."""
        self.loader.validate(code)
        return hashlib.sha256(code).hexdigest()

    # -- execution -------------------------------------------------------------------

    def execute_wire(self, raw_job: Any, state: StateView, codes: CodeSource) -> Result:
        """Validate a decoded job map, then execute; a bad job is an `invalid` Result."""
        try:
            job = Job.from_wire(raw_job, self.limits.max_input_bytes, self.limits.max_fee_limit,
                                self.limits.max_timeout_ms)
        except InvalidJob as exc:
            fields = raw_job if isinstance(raw_job, dict) else {}
            tx_id, fee_limit = fields.get("tx_id"), fields.get("fee_limit")
            if not (type(fee_limit) is int and 0 < fee_limit <= self.limits.max_fee_limit):
                fee_limit = 0  # a report never carries a limit the job could not have
            return self._failed(tx_id if isinstance(tx_id, str) else "", exc,
                                FeeMeter(fee_limit))
        return self.execute(job, state, codes)

    def admitted(self, raw_job: Any, codes: CodeSource) -> Job | None:
        """The Job a decoded map is, when it will pay for its declared keys as far as can be
        told without compiling code: a valid map, not `init`, a contract compiled (here or
        into the artifact cache) whose instantiation has not trapped, with that entry point,
        no more declared keys than a tx may read, and a fee limit that covers what the
        execution is charged before the keys (first_charges) and every declared key. The
        farm fetches the declared keys of such jobs ahead, and only of them: keys fetched
        for a job that ends before it reads them would be free work. None: execute_wire
        decides (and a job it runs reads its keys itself, paying as it goes)."""
        try:
            job = Job.from_wire(raw_job, self.limits.max_input_bytes, self.limits.max_fee_limit,
                                self.limits.max_timeout_ms)
            refused = refusal(job, self.limits, self.settings.default_timeout_ms)
            code_hash = codes.code_hash(job.contract)
            if refused is not None or job.function == "init" or code_hash is None:
                return None
            self.loader.cached(code_hash)  # (the artifact cache's, as its run would load it)
            info = self.loader.instantiable(code_hash)
            if info is None or job.function not in info.entry_points:
                return None  # (code not compiled yet: what it charges first is unknown)
        except Exception:  # (invalid, or Redis away: the job's own run meets it and says so)
            return None
        keys = len(set(job.access))
        if keys > self.limits.max_read_entries:
            return None
        cost = keys * self.schedule.storage_read_key
        return job if cost + first_charges(self.schedule, info) <= job.fee_limit else None

    def execute(self, job: Job, state: StateView, codes: CodeSource, *,
                deploy: bool = False) -> Result:
        """Run one job. Only a deploy (`deploy=True`) may name `init`: it runs once, when
        the contract is deployed, and never again."""
        started = time.perf_counter()
        refused = refusal(job, self.limits, self.settings.default_timeout_ms)
        if refused is not None:
            return self._failed(job.tx_id, refused, FeeMeter(0))
        timeout_ms = job.timeout_ms or self.settings.default_timeout_ms
        try:
            if job.function == "init" and not deploy:
                raise InvalidJob("init runs only at deploy", "init_at_deploy_only")
            contract = self.loader.contract(job.contract, codes, self._wanted(job))
            info = contract if isinstance(contract, ModuleInfo) else contract.info
            if job.function not in info.entry_points:
                raise InvalidJob(f"contract {job.contract!r} has no entry point "
                                 f"{job.function!r}", "unknown_function")
            unpaid = self._unpayable(job, info) if isinstance(contract, ModuleInfo) else None
            if unpaid is not None:
                result = unpaid  # (not compiled here: what running it would end in)
            else:
                assert not isinstance(contract, ModuleInfo)
                self._calls = Calls(job, state, self.limits, timeout_ms,
                                    lambda callee, view: self._run_callee(callee, view, codes))
                try:
                    result = self._run(job, contract, state)
                finally:
                    calls, self._calls = self._calls, None
                result = calls.finish(result)
        except ExecutionError as exc:
            result = self._failed(job.tx_id, exc, FeeMeter(job.fee_limit))
        except Exception as exc:  # a bug: still a result, never a crash
            result = self._failed(job.tx_id, InternalError(f"{type(exc).__name__}: {exc}"),
                                  FeeMeter(job.fee_limit))
        elapsed = time.perf_counter() - started
        result.timings["exec_us"] = round(elapsed * 1e6, 1)
        result.job = job.digest()
        self.metrics.record(result.status, elapsed)
        return result

    def _run(self, job: Job, contract: CompiledContract, state: StateView) -> Result:
        ex = self._execution(job, state)
        warm: WarmInstance | None = None
        try:
            info = contract.info
            sched = self.schedule
            # Bringing the module in is priced by what it is, whatever this executor has
            # cached: the same fee on every node.
            ex.consume(bringing_in(self.schedule, info), "execution", "execution")
            paid = paid_pages(sched, info.memory_pages)
            if paid:
                ex.consume(paid * sched.memory_page, "memory", "initial memory")
            if info.table_elements:
                ex.consume(info.table_elements * sched.table_element, "table", "initial table")
            # A callee whose code already runs in a frame (deployed at another address)
            # gets a Store of its own: warm instances of one code share a Store, and
            # wasmtime sets a Store's stack limit when it is first entered -- in a shared
            # one the callee would get only what its caller and the host frames between
            # left, which differs between the host paths (tests/engine/test_calls.py).
            running = id(contract) in self._running
            warm = self.pool.instantiate(contract)[0] if running else self.pool.acquire(contract)
            ex.attach(warm, info.memory_pages, info.memory_max)
            if warm.instantiate_fuel:
                ex.consume(warm.instantiate_fuel * sched.instruction, "instructions",
                           "instantiation")
            if job.access:  # declared keys are read, and paid for, before the contract runs
                ex.read_declared(job.access)
            self._running.append(id(contract))
            try:
                self._call(ex, warm, job)
            finally:
                self._running.pop()
        except ExecutionError as exc:
            return self._failed(job.tx_id, self._unwound(ex, warm, exc), ex, ex)
        return Result(job.tx_id, "ok", self._report(ex), ex.return_data, None, ex.events,
                      ex.logs, ex.read_set, ex.writes)

    def _execution(self, job: Job, state: StateView) -> AnyExecution:
        if self.host is not None:
            mask = self._masks.get((job.contract, job.mode))
            if mask is None:
                mask = self._masks[(job.contract, job.mode)] = capability_mask(
                    self._denied_set(job))
            return self.host.execution(job, state, mask)
        ex = ExecutionState(job, state, self.schedule, self.limits, self._denied_set(job),
                            self._fuel_cell)
        ex.calls = self._calls
        return ex

    def _run_callee(self, job: Job, state: StateView, codes: CodeSource) -> Result | None:
        """A call's frame (engine/calls.py), or None: no contract there, or no such entry
        point (the call is NOT_FOUND, and nothing beyond its price is charged). A callee
        known here is refused, or found unable to pay for bringing it in, before it is
        loaded: the same Result `_run` would give, without the unpaid work."""
        known = self.loader.known(job.contract, codes)
        if known is not None:
            if job.function not in known.entry_points:
                return None
            unpaid = self._unpayable(job, known)
            if unpaid is not None:
                return unpaid
        try:
            contract = self.loader.contract(job.contract, codes, self._wanted(job))
        except (InvalidJob, Rejected):
            return None
        info = contract if isinstance(contract, ModuleInfo) else contract.info
        if job.function not in info.entry_points:
            return None
        return self._unpayable(job, info) if isinstance(contract, ModuleInfo) else \
            self._run(job, contract, state)

    def _wanted(self, job: Job) -> Callable[[ModuleInfo], bool]:
        """Whether the job can run the module: an entry point it names, a fee that brings
        it in (else ContractLoader compiles nothing for it: a free compile)."""
        return lambda info: job.function in info.entry_points and \
            bringing_in(self.schedule, info) <= job.fee_limit

    def _unpayable(self, job: Job, info: ModuleInfo) -> Result | None:
        """The Result `_run` ends in when the job cannot pay for bringing the module in
        (None: it can), without bringing it in."""
        meter = FeeMeter(job.fee_limit)
        try:
            meter.consume(bringing_in(self.schedule, info), "execution", "execution")
        except OutOfFee as exc:
            return self._failed(job.tx_id, exc, meter)
        return None

    def _native_call(self, ex: Any, address: bytes, function: bytes, data: bytes,
                     fee: int) -> tuple[int, bytes]:
        """wes.call on the C host path (engine/native/abi.c calls it)."""
        assert self._calls is not None
        return self._calls.call(ex, address, function, data, fee)

    def _denied_set(self, job: Job) -> frozenset[str]:
        denied = self._denied.get(job.contract, NOTHING_DENIED)
        return denied | VIEW_DENIED if job.mode == "view" else denied

    def _call(self, ex: AnyExecution, warm: WarmInstance, job: Job) -> None:
        """Run the entry point with the budget left as fuel and the job's deadline."""
        ticks = self._ticks(job.timeout_ms)
        if self.host is not None:
            outcome = self.host.call(cast("NativeExecution", ex), warm.instance_addr,
                                     job.function.encode(), ticks)
            if outcome is False:
                raise InvalidJob(f"no entry point {job.function!r}", "unknown_function")
            if outcome is not None:
                assert isinstance(outcome, tuple)
                self._raise_outcome(ex, *outcome, job.timeout_ms)
        else:
            ex = cast(ExecutionState, ex)
            func = warm.entry(job.function.encode())
            if func is None:
                raise InvalidJob(f"no entry point {job.function!r}", "unknown_function")
            ex.grant_fuel()
            warm.store.set_epoch_deadline(ticks)
            caller, self.slot.current = self.slot.current, ex  # a call's frame nests
            try:
                self._public_call(ex, warm, func, job.timeout_ms)
            finally:
                self.slot.current = caller
        ex.settle()

    def _ticks(self, timeout_ms: int | None) -> int:
        """The epoch deadline for a timeout, in ticks (one more: a tick may be partial)."""
        ticks = self._deadline_ticks.get(timeout_ms or 0)
        if ticks is None:
            ms = timeout_ms or self.settings.default_timeout_ms
            ticks = math.ceil(ms / self.settings.epoch_tick_ms) + 1
            self._deadline_ticks[timeout_ms or 0] = ticks
        return ticks

    def _raise_outcome(self, ex: AnyExecution, trap: int, err: int,
                       timeout_ms: int | None) -> None:
        trap_obj = raw.take_trap(trap) if trap else None
        error_obj = raw.take_error(err) if err else None
        if ex.pending is not None:
            raise _taken(ex)
        if trap_obj is not None:
            self._raise_trap(ex, trap_obj.trap_code, trap_obj.message, timeout_ms)
        if error_obj is not None:
            raise InternalError(f"wasmtime error: {error_obj}")

    def _public_call(self, ex: ExecutionState, warm: WarmInstance, func: Any,
                     timeout_ms: int | None) -> None:
        try:
            wasmtime.Func._from_raw(func)(warm.store)
        except wasmtime.Trap as trap:
            if ex.pending is not None:
                raise _taken(ex) from None
            self._raise_trap(ex, trap.trap_code, trap.message, timeout_ms)
        except ExecutionError:
            raise
        except Exception as exc:
            if ex.pending is not None:
                raise _taken(ex) from None
            raise InternalError(f"wasmtime error: {exc}") from None

    def _raise_trap(self, ex: AnyExecution, code: Any, message: str,
                    timeout_ms: int | None = None) -> None:
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            left = ex.left
            ex.exhaust("instructions")
            raise OutOfFee("instructions", left + 1, left)
        if code == wasmtime.TrapCode.INTERRUPT:
            limit = timeout_ms or self.settings.default_timeout_ms
            raise Timeout(f"wall-clock deadline of {limit} ms passed", "deadline")
        ex.settle()
        kind = TRAP_KINDS.get(code, "trap")
        raise ContractTrap(f"wasm trap: {kind}: {trap_cause(message)}", kind)

    def _unwound(self, ex: AnyExecution, warm: WarmInstance | None,
                 exc: ExecutionError) -> ExecutionError:
        """An execution that left wasm through a trap pays for the unwinding: a flat
        price and one per frame on the stack. Returns what the execution ends with."""
        if not exc.unwinds:
            return exc
        frames = warm.call_depth() if warm is not None else 0
        try:
            ex.consume(self.schedule.trap + frames * self.schedule.trap_frame, "execution",
                       "unwinding a trap")
        except OutOfFee as out:
            return out
        return exc

    def _failed(self, tx_id: str, exc: ExecutionError, meter: Metered,
                ex: AnyExecution | None = None) -> Result:
        if not exc.charged:
            meter = FeeMeter(meter.limit)  # not a consensus result: never charged
        data = exc.reason if hasattr(exc, "reason") and isinstance(exc.reason, bytes) else b""
        result = Result(tx_id, exc.status, self._report(meter), data,
                        {"kind": exc.kind, "message": exc.message})
        if ex is not None:
            result.logs = ex.logs
            result.read_set = ex.read_set
        return result

    def _report(self, meter: Metered) -> FeeReport:
        return FeeReport(meter.limit, meter.used, dict(meter.breakdown), self.schedule.version)

    # -- lifecycle -------------------------------------------------------------------

    def refill(self, budget: int = 64) -> int:
        made = self.pool.refill(budget)
        self.metrics.pool_refills += made
        return made

    def warm_pool_usage(self) -> dict[str, int]:
        """Contracts kept warm, warm instances, and the linear memory they hold (bytes)."""
        return self.pool.usage()

    def get_metrics(self) -> dict[str, Any]:
        return self.metrics.snapshot(self.pool.hits, self.pool.misses)

    def shutdown(self) -> None:
        self.ticker.stopped.set()
        self.pool.clear()
        self.loader.clear()


def _taken(ex: AnyExecution) -> ExecutionError:
    """The host function's failure, taken off the execution: left there, it would make a
    cycle through its traceback that keeps the instance (a pooling slot) alive until the
    garbage collector runs."""
    pending, ex.pending = ex.pending, None
    assert pending is not None
    return _as_execution_error(pending)


def _as_execution_error(exc: BaseException) -> ExecutionError:
    if isinstance(exc, ExecutionError):
        return exc
    return InternalError(f"host function failed: {type(exc).__name__}: {exc}")

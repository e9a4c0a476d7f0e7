"""Workload classes: ns of wall time per fee unit, and how fair the schedule is across them.

A class that buys much more time per fee unit than another is underpriced: a block
builder filling blocks with it gets CPU cheaper than everyone else, and at the largest
fee limit it is what comes closest to the timeout. `fee_fairness_ratio` = max/min of ns
per fee unit over the classes (1.0 is perfectly fair).

Two classes are reported beside it, not in it, because their time depends on the data,
not the code: a random walk over all the memory a contract may have (cache and TLB
misses) and branches on random bits (mispredicts). Each runs exactly the code, and pays
exactly the fee, of a class that is in (a sequential pass, learned branches), so no
static price can tell them apart; what bounds them is the memory limit and the
mispredict penalty, and the largest fee limit is set so that even they end well inside
the default timeout (`worst_case_s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.common import Report, Scale, rounded
from bench.kernels import params
from bench.probe_runner import deployed_codes, farm_state, probe_state, time_run
from bench.probes import Run, depth_input, ed25519_input, secp256k1_input
from config import Settings
from engine import WasmEngine

APART = {"pointer_chase_16m": "cache misses", "branch_random": "mispredicts"}


# A fee limit may not hold more than the timeout at the worst class's ns per fee unit
# divided by this (config: limits.max_fee_per_timeout_ms).
TIMEOUT_SAFETY = 2.0
UNLIMITED = {"max_fee_limit": 10**14, "max_fee_per_timeout_ms": 10**10}
CHASE_16M = 252 * 65_536  # all the memory a contract may have (256 pages, 4 of them taken)


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    run: Run
    cold: bool = False
    farm_state: bool = False
    base: Run | None = None  # timed and charged apart, and taken off (a set-up)


WORKLOADS: tuple[Workload, ...] = (
    Workload("compute_unrolled", Run("compute_unrolled", params(100_000))),
    Workload("compute_loop", Run("compute_loop", params(1_000_000))),
    Workload("kernel_sort", Run("kernel_sort")),
    Workload("kernel_matmul", Run("kernel_matmul")),
    Workload("tight_loop", Run("bare_loop", params(2_000_000))),
    Workload("branch_steady", Run("branches_9", params(200_000, 0))),
    Workload("branch_random", Run("branches_9", params(200_000, 1))),
    Workload("br_table_storm", Run("br_table", params(500_000))),
    Workload("calls_hot", Run("calls", params(500_000))),
    Workload("recursion_deep", Run("recursion", depth_input(5_000, False))),
    Workload("stack_overflow", Run("recursion", function="overflow", expect="trap")),
    Workload("trap_shallow", Run("trap", params(0), expect="trap")),
    Workload("host_calls", Run("host_call_storm", params(5_000))),
    Workload("input_64k", Run("input_bytes", params(200, 0, bytes(60_000)))),
    Workload("return_64k", Run("output_bytes", params(200, 60_000))),
    Workload("log_lines", Run("log_spam", params(2_000, 1_000))),
    Workload("reads_present", Run("storage_reads", params(3_000, 0, b"k"))),
    Workload("reads_16k", Run("storage_reads", params(1_000, 16_384, b"big"))),
    Workload("reads_distinct_redis", Run("distinct_reads", params(1_000)), farm_state=True),
    Workload("writes_small", Run("storage_writes", params(1_000, 16))),
    Workload("writes_large", Run("storage_writes", params(200, 4_096))),
    Workload("events", Run("event_spam", params(256, 4_096))),
    Workload("hash_empty", Run("hashing", params(3_000, 0))),
    Workload("hash_16k", Run("hashing", params(200, 16_384))),
    Workload("ed25519_1k", Run("ed25519", ed25519_input(200, 1_024))),
    Workload("secp256k1_recover", Run("secp256k1_recover", secp256k1_input(200, True))),
    Workload("memory_grow_touch", Run("pages", params(240))),
    Workload("memory_fill_read", Run("memory_heavy", params(64, 4))),
    Workload("cold_contract", Run("sized_400000"), cold=True),
    Workload("load_chain_l1", Run("pointer_chase", params(20_000, 16_384))),
    Workload("divide_chain", Run("divide_chain", params(20_000, 3))),
    # the chase alone (the shuffle of 16 MiB taken off): every load a cache and TLB miss
    Workload("pointer_chase_16m", Run("pointer_chase", params(60_000, CHASE_16M)),
             base=Run("pointer_chase", params(0, CHASE_16M))),
)
KERNEL_ROUNDS = {"kernel_sort": 3, "kernel_matmul": 20}


@dataclass(frozen=True, slots=True)
class Timed:
    seconds: float
    fee: int

    @property
    def ns_per_fee(self) -> float:
        return self.seconds * 1e9 / self.fee


def measure(settings: Settings, reps: int, redis_url: str | None) -> dict[str, Timed]:
    """Every workload's fastest time and its fee under `settings`' schedule (run far past
    any fee limit a job may ask: what is timed is the work, not where a limit stops it)."""
    from bench import kernels

    settings = settings.model_copy(update={"limits": settings.limits.model_copy(
        update=UNLIMITED)})

    names = {w.run.contract for w in WORKLOADS if not w.run.contract.startswith("kernel_")}
    codes, state = deployed_codes(names), probe_state()
    for name, rounds in KERNEL_ROUNDS.items():
        codes.deploy(name, kernels.kernel_wasm(name.removeprefix("kernel_"), rounds))
    engine = WasmEngine(settings)
    out = {}
    try:
        with farm_state(redis_url) as farm:
            for w in WORKLOADS:
                view: Any = farm if w.farm_state and farm is not None else state
                engine.precompile(codes.modules[codes.addresses[w.run.contract]])
                ns, fee = _timed(engine, w.run, view, codes, w.cold, reps, state)
                if w.base is not None:
                    base_ns, base_fee = _timed(engine, w.base, view, codes, w.cold, reps, state)
                    ns, fee = ns - base_ns, fee - base_fee
                out[w.name] = Timed(ns / 1e9, fee)
    finally:
        engine.shutdown()
    return out


def _timed(engine: WasmEngine, run: Run, view: Any, codes: Any, cold: bool, reps: int,
           state: Any) -> tuple[float, int]:
    """The fastest of `reps` runs (ns) and the fee it pays."""
    from bench.units import job_for

    ns = time_run(engine, run, view, codes, cold, reps)
    job = job_for(run.contract, run.data, run.function, engine.limits.max_fee_limit)
    return ns, engine.execute(job, state, codes).fee.used


def fairness(timed: dict[str, Timed]) -> tuple[dict[str, float], float]:
    """ns per fee unit by class, and max/min over them (the data-bound classes apart)."""
    ns = {name: rounded(t.ns_per_fee) for name, t in timed.items()}
    fair = [v for name, v in ns.items() if name not in APART]
    return ns, rounded(max(fair) / min(fair))


def fee_figures(rep: Report, settings: Settings, scale: Scale,
                redis_url: str | None = None) -> dict[str, Timed]:
    timed = measure(settings, max(3, scale.workload_reps), redis_url)
    ns, ratio = fairness(timed)
    for name, t in timed.items():
        rep.progress(f"  {name:22s} {t.seconds * 1e3:8.2f} ms  fee {t.fee:>14,}  "
                     f"{t.ns_per_fee:8.4f} ns/fee")
    rep.set("ns_per_fee_unit", ns)
    fair = {k: v for k, v in ns.items() if k not in APART}
    slowest, cheapest = max(fair, key=fair.__getitem__), min(fair, key=fair.__getitem__)
    rep.set("fee_fairness_ratio", ratio, f"{slowest} buys {ratio:.2f}× the time per fee unit "
            f"of {cheapest}")
    for name, why in APART.items():
        rep.extra(f"{name}_vs_cheapest ({why})", rounded(ns[name] / min(fair.values())))
    worst_name = max(ns, key=ns.__getitem__)
    worst = ns[worst_name]
    per_ms = settings.limits.max_fee_per_timeout_ms
    rep.set("worst_case_s", rounded(worst * settings.default_timeout_ms * per_ms / 1e9),
            f"the largest fee a job of the default timeout "
            f"({settings.default_timeout_ms / 1000:g} s) may carry, spent on the worst class "
            f"({worst_name}, {worst:.3f} ns per fee unit)")
    # What limits.max_fee_per_timeout_ms may be: a fee limit then buys at most
    # 1/TIMEOUT_SAFETY of its timeout on the worst class.
    rep.extra("max_fee_per_timeout_ms_bound", int(1e6 / (worst * TIMEOUT_SAFETY)))
    return timed

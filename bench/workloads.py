"""Workload classes through WasmEngine.execute: ns of wall time per fee unit, and fairness.

A class that buys much more time per fee unit than another is underpriced: a
block builder filling blocks with it gets CPU cheaper than everyone else.
`fee_fairness_ratio` = max/min over the classes (1.0 is perfectly fair).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench import kernels
from bench.common import Report, Scale, median, rounded
from bench.engine_bench import EngineRig
from config import Settings


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    n: int  # loop count (scaled)
    length: int  # bytes per operation, or read passes for memory_heavy
    scalable: bool = True  # False: n is a hard limit (max_events)


WORKLOADS = (
    Workload("compute_loop", 1_000_000, 0),
    Workload("memory_heavy", 64, 4),
    Workload("host_call_storm", 2_000, 0),
    Workload("storage_writes", 2_000, 64),
    Workload("hashing", 1_000, 1_024),
    Workload("event_spam", 256, 64, scalable=False),
)


@dataclass(frozen=True, slots=True)
class Measured:
    seconds: float  # median wall time of one execution
    fee: int  # fee used (deterministic)
    breakdown: dict[str, int]
    best: float  # the fastest repetition (calibration: noise on a shared machine only adds)

    @property
    def ns_per_fee(self) -> float:
        return self.seconds * 1e9 / self.fee

    @property
    def best_ns_per_fee(self) -> float:
        return self.best * 1e9 / self.fee


class WorkloadRig(EngineRig):
    """An EngineRig with every workload and probe contract deployed under its own name."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        for name in (*kernels.WORKLOADS, *kernels.PROBES):
            self.deploy(name, kernels.workload_wasm(name))

    def measure(self, name: str, data: bytes, reps: int) -> Measured:
        job = self.job(name, data)
        self.warm_up(job)
        times, result = [], None
        for _ in range(max(1, reps)):
            elapsed, result = self.timed_warm(job)
            times.append(elapsed)
        assert result is not None
        return Measured(median(times), result.fee.used, dict(result.fee.breakdown), min(times))


def scaled(w: Workload, scale: Scale) -> tuple[int, int]:
    n = w.n if not w.scalable else max(1, round(w.n * scale.workload_size))
    if w.name == "event_spam":
        n = max(1, min(n, round(256 * max(scale.workload_size, 0.1))))
    return n, w.length


def measure_classes(settings: Settings, scale: Scale) -> dict[str, Measured]:
    return measure_interleaved([settings], scale)[0]


def measure_interleaved(schedules: list[Settings], scale: Scale) -> list[dict[str, Measured]]:
    """Every class under each settings, repetitions interleaved (drift hits all alike)."""
    rigs = [WorkloadRig(s) for s in schedules]
    try:
        out: list[dict[str, Measured]] = [{} for _ in rigs]
        for w in WORKLOADS:
            n, length = scaled(w, scale)
            jobs = [rig.job(w.name, kernels.params(n, length)) for rig in rigs]
            for rig, job in zip(rigs, jobs, strict=True):
                rig.warm_up(job)
            times: list[list[float]] = [[] for _ in rigs]
            results: list[Any] = [None for _ in rigs]
            for _ in range(max(1, scale.workload_reps)):
                for i, (rig, job) in enumerate(zip(rigs, jobs, strict=True)):
                    elapsed, results[i] = rig.timed_warm(job)
                    times[i].append(elapsed)
            for i, result in enumerate(results):
                out[i][w.name] = Measured(median(times[i]), result.fee.used,
                                          dict(result.fee.breakdown), min(times[i]))
        return out
    finally:
        for rig in rigs:
            rig.close()


def fairness(measured: dict[str, Measured],
             best: bool = False) -> tuple[dict[str, float], float]:
    """ns per fee unit by class (median runs, or the fastest) and max/min of them."""
    ns = {name: rounded(m.best_ns_per_fee if best else m.ns_per_fee)
          for name, m in measured.items()}
    return ns, rounded(max(ns.values()) / min(ns.values()))


def fee_figures(rep: Report, settings: Settings, scale: Scale) -> dict[str, Any]:
    measured = measure_classes(settings, scale)
    ns, ratio = fairness(measured)
    for name, m in measured.items():
        top = max(m.breakdown, key=lambda k: m.breakdown[k])
        rep.progress(f"  {name:16s} {m.seconds * 1e3:8.2f} ms  fee {m.fee:>11,}  "
                     f"{m.ns_per_fee:8.4f} ns/fee  (mostly {top})")
    rep.set("ns_per_fee_unit", ns)
    slowest = max(ns, key=lambda k: ns[k])
    cheapest = min(ns, key=lambda k: ns[k])
    rep.set("fee_fairness_ratio", ratio, f"{slowest} buys {ratio:.1f}× the time per fee unit "
            f"of {cheapest}")
    return {"measured": measured}

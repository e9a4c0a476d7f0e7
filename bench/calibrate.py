"""`wesfarm calibrate`: time per unit of every price, a proposed schedule, and its fairness.

Each price gets a probe run at two sizes through WasmEngine.execute; the slope
(Δ wall time over Δ units, after subtracting the units already calibrated) is the
time one unit costs on this machine. Fixed per-execution costs cancel in the
difference. Anchor: one instruction (wasmtime fuel unit) = 1 fee unit, so
price = time per unit / time per fuel unit, and fee units per second = 1 / τ.
The proposal is then checked: the six workload classes run under the current
and the proposed schedule, and `fee_fairness_ratio` = max/min ns per fee unit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from bench import kernels
from bench.common import SCALES, Report, Scale, bench_settings, median, rounded
from bench.workloads import Measured, WorkloadRig, fairness, measure_interleaved
from config import FeePrices, Settings

HASH_REFERENCE_BYTES = 1_024
PAGE = 65_536
ROUNDS = {"tiny": 1, "quick": 3, "full": 7}


@dataclass
class Calibration:
    ns: dict[str, float] = field(default_factory=dict)  # ns per unit, by price name
    extras: dict[str, float] = field(default_factory=dict)
    prices: dict[str, int] = field(default_factory=dict)

    @property
    def tau(self) -> float:
        return self.ns["instruction"]


class Prober:
    """Runs probe pairs on one rig; `fuel(m)` reads the instructions a run used."""

    def __init__(self, rig: WorkloadRig, settings: Settings, reps: int, size: float) -> None:
        self.rig, self.reps, self.size = rig, reps, size
        self.price = settings.fees.instruction

    def n(self, count: int) -> int:
        return max(2, round(count * self.size))

    def run(self, name: str, n: int, length: int, extra: bytes = b"") -> Measured:
        return self.rig.measure(name, kernels.params(n, length, extra), self.reps)

    def fuel(self, m: Measured) -> float:
        return m.breakdown["instructions"] / self.price

    def slope(self, small: Measured, large: Measured, units: float, known_ns: float) -> float:
        """ns per unit: (ΔT − time of what is already calibrated) / Δunits."""
        delta_ns = (large.best - small.best) * 1e9 - known_ns
        return max(delta_ns, 0.0) / units


def measure_units(settings: Settings, scale: Scale, rep: Report) -> Calibration:
    """Several rounds of every probe; each price's ns is the median over the rounds (one
    round is quick, and a load spike on a shared machine spoils a round, not the result)."""
    rounds = [_round(settings, scale, rep, i) for i in range(ROUNDS[scale.name])]
    cal = Calibration()
    for key in rounds[0].ns:
        cal.ns[key] = median([r.ns[key] for r in rounds])
    for key in rounds[0].extras:
        cal.extras[key] = median([r.extras[key] for r in rounds])
    rep.progress(f"instruction: {cal.tau:.4f} ns per fuel unit ({1 / cal.tau:.2f} G fuel/s), "
                 f"median of {len(rounds)} rounds")
    return cal


def _round(settings: Settings, scale: Scale, rep: Report, index: int) -> Calibration:
    cal = Calibration()
    rig = WorkloadRig(settings)
    p = Prober(rig, settings, max(5, scale.workload_reps), scale.workload_size)
    try:
        rig.state.data["storage_reads"] = {b"big": (b"\x5a" * 16_384, 1)}
        # instruction: the compute loop at two lengths
        a, b = p.run("compute_loop", p.n(200_000), 0), p.run("compute_loop", p.n(2_000_000), 0)
        cal.ns["instruction"] = p.slope(a, b, p.fuel(b) - p.fuel(a), 0)
        tau = cal.tau
        rep.progress(f"round {index + 1}: instruction {tau:.4f} ns per fuel unit")

        def fuel_ns(x: Measured, y: Measured) -> float:
            return (p.fuel(y) - p.fuel(x)) * tau

        # host call base: 3 context calls per iteration
        a, b = p.run("host_call_storm", p.n(200), 0), p.run("host_call_storm", p.n(2_000), 0)
        calls = 3 * (p.n(2_000) - p.n(200))
        cal.ns["host_call"] = p.slope(a, b, calls, fuel_ns(a, b))
        per_call = cal.ns["host_call"]
        # bytes in / out: same call count, bigger payloads
        n = p.n(300)
        a, b = p.run("input_bytes", n, 0, b"\0" * 1_000), p.run("input_bytes", n, 0,
                                                                b"\0" * 60_000)
        cal.ns["byte_in"] = p.slope(a, b, n * 59_000, fuel_ns(a, b))
        a, b = p.run("output_bytes", n, 1_000), p.run("output_bytes", n, 60_000)
        cal.ns["byte_out"] = p.slope(a, b, n * 59_000, fuel_ns(a, b))
        # storage read: base on an absent 1-byte key, per byte on a 16 KiB value
        a = p.run("storage_reads", p.n(300), 0, b"k")
        b = p.run("storage_reads", p.n(3_000), 0, b"k")
        reads = p.n(3_000) - p.n(300)
        cal.ns["storage_read"] = p.slope(a, b, reads, fuel_ns(a, b) + reads * per_call)
        n = p.n(1_000)
        a, b = p.run("storage_reads", n, 16, b"big"), p.run("storage_reads", n, 16_384, b"big")
        cal.ns["storage_read_byte"] = p.slope(a, b, n * (16_384 - 16), fuel_ns(a, b))
        # storage write: per byte from the value length, base from the count
        n = p.n(1_000)
        a, b = p.run("storage_writes", n, 8), p.run("storage_writes", n, 4_096)
        cal.ns["storage_write_byte"] = p.slope(a, b, n * 4_088, fuel_ns(a, b))
        a, b = p.run("storage_writes", p.n(300), 8), p.run("storage_writes", p.n(3_000), 8)
        writes = p.n(3_000) - p.n(300)
        known = fuel_ns(a, b) + writes * (per_call + 40 * cal.ns["storage_write_byte"])
        cal.ns["storage_write"] = p.slope(a, b, writes, known)
        # events: at most max_events per execution
        top = min(256, settings.limits.max_events)
        a, b = p.run("event_spam", top, 16), p.run("event_spam", top, 4_096)
        cal.ns["event_byte"] = p.slope(a, b, top * 4_080, fuel_ns(a, b))
        a, b = p.run("event_spam", top // 8, 16), p.run("event_spam", top, 16)
        events = top - top // 8
        known = fuel_ns(a, b) + events * (per_call + 32 * cal.ns["event_byte"])
        cal.ns["event"] = p.slope(a, b, events, known)
        # hashing: sha256 and keccak256 alternately; per byte from long inputs, then the
        # per-call cost beyond the host call (ABI 1's schedule has no price for it yet)
        n = p.n(200)
        a, b = p.run("hashing", n, 64), p.run("hashing", n, 16_384)
        cal.ns["hash_byte"] = p.slope(a, b, n * (16_384 - 64), fuel_ns(a, b))
        a, b = p.run("hashing", p.n(100), 64), p.run("hashing", p.n(1_000), 64)
        hashes = p.n(1_000) - p.n(100)
        known = fuel_ns(a, b) + hashes * (per_call + 64 * cal.ns["hash_byte"])
        cal.extras["hash_call_ns"] = p.slope(a, b, hashes, known)
        # memory page: grown and faulted in (one byte per 4 KiB), instructions apart
        a, b = p.run("pages", 16, 0), p.run("pages", 128, 0)
        cal.ns["memory_page"] = p.slope(a, b, 112, fuel_ns(a, b))
        a, b = p.run("memory_heavy", 16, 1), p.run("memory_heavy", 128, 1)
        cal.extras["page_filled_and_read_ns"] = p.slope(a, b, 112, fuel_ns(a, b))
        cal.ns["execution"] = _execution_ns(rig, p.n(4_000))
    finally:
        rig.close()
    return cal


def _execution_ns(rig: WorkloadRig, count: int) -> float:
    """The fixed cost of an execution: an empty entry point, run `count` times the way an
    executor runs jobs (warm instances refilled when the pool runs dry, counted in)."""
    rig.deploy("noop", kernels.wasm(kernels.NOOP_WAT))
    job = rig.job("noop")
    rig.warm_up(job)
    engine, warm = rig.engine, rig.engine.compiled[rig.codes.addresses["noop"]].warm
    best = float("inf")
    for _ in range(3):
        engine.refill()
        started = time.perf_counter()
        for _ in range(count):
            engine.execute(job, rig.state, rig.codes)
            if not warm:
                engine.refill()
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e9


def propose(cal: Calibration, current: FeePrices, settings: Settings) -> dict[str, int]:
    """Prices in fee units (instruction = 1). The hash call's own cost is folded into
    hash_byte at a 1 KiB reference input until the schedule has a `hash` base price.
    The pages the pool keeps resident fault nothing: the execution price includes them."""
    prices = {"instruction": 1}
    for name, ns in cal.ns.items():
        if name != "instruction":
            prices[name] = _units(ns, cal.tau)
    folded = cal.ns["hash_byte"] + cal.extras.get("hash_call_ns", 0.0) / HASH_REFERENCE_BYTES
    prices["hash_byte"] = _units(folded, cal.tau)
    prices["table_element"] = current.table_element  # not measured: instantiation-time only
    prices["memory_free_pages"] = settings.memory_keep_resident_kb * 1024 // PAGE
    return prices


def _units(ns: float, tau: float) -> int:
    """Whole fee units; a cost that was measured but is under one unit still costs one
    (integer prices cannot say 0.4: rounding up overprices, rounding to 0 gives it away)."""
    return max(1, round(ns / tau)) if ns > 0 else 0


def fees_toml(prices: dict[str, int], version: str) -> str:
    lines = ["[fees]", f'version = "{version}"']
    lines += [f"{name} = {value}" for name, value in prices.items()]
    return "\n".join(lines)


def fees_env(prices: dict[str, int], version: str) -> str:
    lines = [f"WESFARM_FEES__VERSION={version}"]
    lines += [f"WESFARM_FEES__{name.upper()}={value}" for name, value in prices.items()]
    return "\n".join(lines)


def transfer_fee(settings: Settings) -> tuple[int, float]:
    """(fee used, median µs) of a token transfer: what a fee limit must cover."""
    from bench.common import TOKEN
    from bench.engine_bench import EngineRig, transfer_jobs

    rig = EngineRig(settings)
    try:
        rig.deploy("token", TOKEN.read_bytes())
        rig.state.apply("token", rig.run(rig.job("token", (10**15).to_bytes(8, "little"),
                                                 "mint")).write_set)
        times, fee = [], 0
        for job in transfer_jobs(200, "cal-"):
            elapsed, result = rig.timed_warm(replace(job, fee_limit=rig.fee_limit))
            times.append(elapsed)
            fee = result.fee.used
        return fee, rounded(median(times) * 1e6)
    finally:
        rig.close()


def calibrate(scale_name: str, rep: Report, version: str = "wes-fee-3") -> dict[str, Any]:
    scale = SCALES[scale_name]
    with bench_settings() as settings:
        rep.progress("measuring time per unit of every price ...")
        cal = measure_units(settings, scale, rep)
        cal.prices = propose(cal, settings.fees, settings)
        fees = FeePrices(version=version, **cal.prices)
        with bench_settings(fees=fees) as proposed:
            rep.progress("workload classes under the current and the proposed schedule, "
                         "interleaved ...")
            more = replace(scale, workload_reps=3 * scale.workload_reps)
            now, new = measure_interleaved([settings, proposed], more)
            before, after = fairness(now), fairness(new)
            best_before, best_after = fairness(now, best=True), fairness(new, best=True)
            fee_before, fee_after = transfer_fee(settings), transfer_fee(proposed)
    return {
        "ns_per_unit": {k: rounded(v) for k, v in cal.ns.items()},
        "extras": {k: rounded(v) for k, v in cal.extras.items()},
        "fee_units_per_second": rounded(1e9 / cal.tau),
        "current": settings.fees.model_dump(),
        "proposed": {"version": version, **cal.prices},
        "ns_per_fee_unit_current": before[0],
        "fee_fairness_ratio_current": before[1],
        "ns_per_fee_unit_proposed": after[0],
        "fee_fairness_ratio_proposed": after[1],
        "fee_fairness_ratio_current_best": best_before[1],
        "fee_fairness_ratio_proposed_best": best_after[1],
        "ns_per_fee_unit_proposed_best": best_after[0],
        "token_transfer": {"us": fee_after[1], "fee_current": fee_before[0],
                           "fee_proposed": fee_after[0]},
    }

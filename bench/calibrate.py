"""`wesfarm calibrate`: the cost of every price's unit, a proposed schedule, its fairness.

Each price has a probe (bench/probes.py): two runs whose difference is mostly that
price's unit; exact unit counts come from the fee meter (bench/units.py). A price is its
unit's cost over the cost of one fuel unit of dense compute (1 instruction = 1 fee unit).

Costs are measured two ways. Wall time (the median over rounds of the fastest of several
runs) is what the prices are made of: it is what a fee buys and what the timeout is
about. Counted cost -- instructions plus simulated mispredicts under callgrind
(bench/instructions.py), the same on every host of an architecture -- is the cross-
check: its schedule is reported beside the timed one, with its fairness by time, so a
reader sees which prices a host could move and by how much. (Counted prices alone do not
buy fair time: instructions cost different time in different code -- a Python host call
retires several instructions per cycle, a dependent arithmetic chain one -- and callgrind
cannot see page faults, signals, waiting on Redis or the pooling allocator at all.
docs/FEES.md has the numbers.)

The check runs the workload classes (bench/workloads.py) under the proposed schedule:
ns per fee unit by class, and the fairness ratio, by time on this machine.
"""

from __future__ import annotations

from typing import Any

from bench import instructions, probe_runner, workloads
from bench.common import Report, bench_settings, rounded
from config import FeePrices, Settings

# What callgrind cannot count at all (waiting, the kernel, signals, the pooling allocator:
# a call instantiates its callee) or misreads (valgrind counts `rep movsb` once per byte):
# no counted price for these.
UNCOUNTED = ("storage_read_key", "memory_page", "execution", "module_byte", "trap", "call",
             "call_byte",
             "trap_frame", "byte_in", "byte_out", "storage_read_byte", "storage_write_byte",
             "event_byte", "hash_byte")
PAGE = 65_536
# Fee units per fuel unit: fine enough that a byte copied can cost a fraction of an add.
FEE_UNITS_PER_FUEL = 10
RULES = ("loop_fuel", "branch_fuel", "call_fuel", "load_fuel", "divide_fuel")
REPS = {"tiny": 2, "quick": 5, "full": 9}


def _runs(probes: list[probe_runner.Measured]) -> dict[str, dict[str, Any]]:
    out = {}
    for m in probes:
        if m.probe.price in UNCOUNTED:
            continue
        for tag, run in (("small", m.probe.small), ("large", m.probe.large)):
            out[f"{m.probe.price}:{tag}"] = {"contract": run.contract, "data": run.data.hex(),
                                             "function": run.function, "expect": run.expect,
                                             "cold": m.probe.cold}
    return out


def _prices(per_unit: dict[str, float], names: tuple[str, ...]) -> dict[str, int]:
    """Whole fee units, FEE_UNITS_PER_FUEL to one fuel unit of dense compute (the rules
    of the instrumentation are in fuel units); a cost measured but under one unit still
    costs one."""
    fuel = per_unit["instruction"]
    out = {}
    for name in names:
        scale = fuel if name in RULES else fuel / FEE_UNITS_PER_FUEL
        out[name] = max(1, round(per_unit[name] / scale)) if per_unit[name] > 0 else 0
    return out


def propose(measured: list[probe_runner.Measured], settings: Settings,
            counted: dict[str, float] | None) -> tuple[dict[str, int], dict[str, Any]]:
    """The timed schedule's prices, and the counted cross-check."""
    ns = probe_runner.solve(measured, lambda m: m.ns)
    names = tuple(m.probe.price for m in measured)
    fixed = {"memory_free_pages": settings.memory_keep_resident_kb * 1024 // PAGE,
             "table_element": settings.fees.table_element}  # instantiation-time only
    prices = {**_prices(ns, names), **fixed}
    detail: dict[str, Any] = {"ns_per_unit": {k: rounded(v) for k, v in ns.items()}}
    if counted is not None:
        for m in measured:
            if m.probe.price not in UNCOUNTED:
                m.ir = (counted[f"{m.probe.price}:small"], counted[f"{m.probe.price}:large"])
        cost = probe_runner.solve([m for m in measured if m.ir is not None],
                                  lambda m: m.ir or (0.0, 0.0))
        detail["counted_per_unit"] = {k: rounded(v) for k, v in cost.items()}
        detail["counted_prices"] = {**prices, **_prices(cost, tuple(cost))}
    return prices, detail


def calibrate(scale_name: str, rep: Report, version: str, redis_url: str | None
              ) -> dict[str, Any]:
    reps = REPS[scale_name]
    # Probes and workloads run far past any fee limit a job may ask for: not what is timed.
    limits = workloads.UNLIMITED
    with bench_settings(limits=limits) as settings:
        rep.progress("probes: unit counts and fastest times ...")
        measured = probe_runner.measure(settings, reps, redis_url, rep.progress)
        why = instructions.available()
        counted = None
        if why is None:
            rep.progress("probes under callgrind (estimated cycles; a minute or two) ...")
            counted = instructions.count(_runs(measured))
        else:
            rep.note(f"estimated cycles not counted ({why}): every price is timed")
        prices, detail = propose(measured, settings, counted)
        fees = FeePrices(version=version, **prices)
        rep.progress("workload classes under the current and the proposed schedule ...")
        now = workloads.measure(settings, reps, redis_url)
        with bench_settings(fees=fees, limits=limits) as proposed:
            new = workloads.measure(proposed, reps, redis_url)
        if "counted_prices" in detail:
            with bench_settings(fees=FeePrices(version="counted", **detail["counted_prices"]),
                                limits=limits) as by_count:
                detail["fee_fairness_ratio_counted"] = workloads.fairness(
                    workloads.measure(by_count, reps, redis_url))[1]
    before, after = workloads.fairness(now), workloads.fairness(new)
    return {
        **detail,
        "notes": [n for m in measured for n in m.notes],
        "current": settings.fees.model_dump(),
        "proposed": {"version": version, **prices},
        "ns_per_fee_unit_current": before[0],
        "fee_fairness_ratio_current": before[1],
        "ns_per_fee_unit_proposed": after[0],
        "fee_fairness_ratio_proposed": after[1],
        "fee_units_per_second": rounded(FEE_UNITS_PER_FUEL * 1e9
                                        / detail["ns_per_unit"]["instruction"]),
    }


def fees_toml(prices: dict[str, int], version: str) -> str:
    lines = ["[fees]", f'version = "{version}"']
    lines += [f"{name} = {value}" for name, value in prices.items()]
    return "\n".join(lines)


def fees_env(prices: dict[str, int], version: str) -> str:
    lines = [f"WESFARM_FEES__VERSION={version}"]
    lines += [f"WESFARM_FEES__{name.upper()}={value}" for name, value in prices.items()]
    return "\n".join(lines)

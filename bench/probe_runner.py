"""Running probes: the exact units of each run and its cost (fastest of several wall-clock
runs; instruction counts come from bench/instructions.py), then the solve.

The solve takes the probes in order; a probe's price is the cost of its difference minus
what the difference's other units cost at the prices found so far. Three passes: a later
probe's price feeds back into an earlier one's "other units" (a compute loop has loop
iterations too).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import probes
from bench.probes import Probe, Run
from bench.units import UnitCounter, job_for
from config import Settings
from engine import MemoryCode, MemoryState, StateView, WasmEngine

PASSES = 3


@dataclass
class Measured:
    """One probe: its two runs' units and costs (ns, and Ir when counted)."""

    probe: Probe
    units: tuple[dict[str, int], dict[str, int]]
    ns: tuple[float, float]
    ir: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)


def deployed_codes(names: set[str]) -> MemoryCode:
    codes = MemoryCode()
    for name in sorted(names):
        codes.deploy(name, probes.code(name))
    return codes


def probe_state() -> MemoryState:
    state = MemoryState()
    for contract, values in probes.STATE.items():
        state.data[contract] = dict(values)
    return state


@contextmanager
def farm_state(redis_url: str | None) -> Iterator[Callable[[], StateView] | None]:
    """Fresh views of the farm's committed state in Redis (a private, empty prefix), the
    way an executor reads it; None when no Redis can be had."""
    if redis_url is None:
        yield None
        return
    import redis as redis_lib

    from worker import RedisSources
    from worker.protocol import Keys

    client = redis_lib.Redis.from_url(redis_url)
    keys = Keys(f"wesfarm-calibrate-{uuid.uuid4().hex[:8]}")
    try:
        yield lambda: RedisSources(client, keys)
    finally:
        client.close()


def time_run(engine: WasmEngine, run: Run, state: StateView | Callable[[], StateView],
             codes: MemoryCode, cold: bool, reps: int) -> float:
    """ns of the fastest of `reps` executions (after one untimed)."""
    job = job_for(run.contract, run.data, run.function, engine.limits.max_fee_limit)
    best = float("inf")
    for i in range(reps + 1):
        view = state() if callable(state) else state
        if cold:
            engine.loader.clear()
            engine.pool.clear()
        else:
            engine.refill()
        started = time.perf_counter()
        result = engine.execute(job, view, codes)
        elapsed = time.perf_counter() - started
        if result.status != run.expect:
            raise RuntimeError(f"probe {run.contract}: {result.status} {result.error}")
        if i:
            best = min(best, elapsed)
    return best * 1e9


def measure(settings: Settings, reps: int, redis_url: str | None,
            progress: Callable[[str], None], rounds: int = 3) -> list[Measured]:
    """Every probe: exact units, and the median over `rounds` (interleaved, so a load
    spike on a shared machine spoils one round, not the result) of its fastest times."""
    names = {r.contract for p in probes.PROBES for r in (p.small, p.large)}
    codes, state = deployed_codes(names), probe_state()
    out = []
    with tempfile.TemporaryDirectory(prefix="wesfarm-units-") as tmp, \
            farm_state(redis_url) as farm:
        counter = UnitCounter(settings, Path(tmp))
        engine = WasmEngine(settings)
        try:
            for code in (probes.code(n) for n in sorted(names)):
                engine.precompile(code)
            for probe in probes.PROBES:
                units = tuple(counter.units(job_for(r.contract, r.data, r.function,
                                                    settings.limits.max_fee_limit),
                                            state, codes, r.expect)
                              for r in (probe.small, probe.large))
                out.append(Measured(probe, (units[0], units[1]), (0.0, 0.0)))
                if probe.farm_state and farm is None:
                    out[-1].notes.append("no Redis: distinct reads timed on in-memory state")
            times: list[list[tuple[float, float]]] = [[] for _ in out]
            for round_ in range(rounds):
                for m, seen in zip(out, times, strict=True):
                    view: Any = farm if m.probe.farm_state and farm is not None else state
                    seen.append((time_run(engine, m.probe.small, view, codes, m.probe.cold, reps),
                                 time_run(engine, m.probe.large, view, codes, m.probe.cold, reps)))
                progress(f"round {round_ + 1} of {rounds} timed")
            for m, seen in zip(out, times, strict=True):
                m.ns = (statistics.median(t for t, _ in seen),
                        statistics.median(t for _, t in seen))
                progress(f"{m.probe.price:20s} {m.ns[0] / 1e3:10.1f} / {m.ns[1] / 1e3:10.1f} µs")
        finally:
            engine.shutdown()
            counter.close()
    return out


def solve(measured: list[Measured], cost: Callable[[Measured], tuple[float, float]]
          ) -> dict[str, float]:
    """Cost per unit of every price (`cost`: a probe's two costs, ns or Ir)."""
    known: dict[str, float] = {}
    for _ in range(PASSES):
        for m in measured:
            small, large = cost(m)
            target = m.probe.price
            if m.probe.small == m.probe.large:  # an absolute cost (one execution)
                d_cost, d_units = large, m.units[1]
            else:
                d_cost = large - small
                d_units = {k: m.units[1][k] - m.units[0][k] for k in m.units[1]}
            others = sum(d_units[k] * known.get(k, 0.0) for k in d_units if k != target)
            if d_units[target] <= 0:
                raise RuntimeError(f"probe {target}: its runs do not differ in its unit")
            known[target] = max(d_cost - others, 0.0) / d_units[target]
    return known

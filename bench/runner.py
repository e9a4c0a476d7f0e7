"""Run the bench: in-process figures, memory, end-to-end; print the table, write the JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.budget_bench import BUDGET_KEYS
from bench.commit_bench import COMMIT_KEYS
from bench.common import SCALES, Report, bench_settings, fmt, machine
from bench.latency_soak import SOAK_KEYS
from bench.scale_bench import SCALE_KEYS
from bench.state_bench import STATE_KEYS

# The headline figures, in report order (units in the names).
KEYS = (
    "compile_ms_100k", "compile_ms_1m", "cached_load_ms",
    "instantiate_us", "pool_acquire_us", "call_overhead_us",
    "host_call_us", "baseline_host_call_us", "fuel_overhead_ratio",
    "engine_tx_per_s", "baseline_engine_tx_per_s",
    "e2e_tx_per_s_single", "e2e_tx_per_s_batch", "arq_noop_jobs_per_s",
    "latency_p50_ms", "latency_p99_ms",
    "executor_rss_mb", "module_memory_mb",
    "ns_per_fee_unit", "fee_fairness_ratio",
)
# The fee and resource model (bench/budget_bench.py, bench/workloads.py).
FEE_KEYS = (*BUDGET_KEYS, "worst_case_s")
IN_PROCESS_KEYS = tuple(k for k in (*KEYS, *FEE_KEYS)
                        if not k.startswith(("e2e_", "arq_", "latency_")))
# The block-commit figures (bench/commit_bench.py), after them.
REPORT_KEYS = (*KEYS, *FEE_KEYS, *COMMIT_KEYS, *STATE_KEYS, *SOAK_KEYS, *SCALE_KEYS)
DEFAULT_OUT = Path("bench-results") / "latest.json"

Check = Callable[[float, dict[str, Any]], bool]


def _ratio_of(other: str, factor: float, at_least: bool = True) -> Check:
    def check(v: float, values: dict[str, Any]) -> bool:
        base = values.get(other)
        if not isinstance(base, int | float):
            return False
        return v >= factor * base if at_least else v <= factor * base
    return check


# key -> (target text, check): the project's performance targets.
TARGETS: dict[str, tuple[str, Check]] = {
    "compile_ms_100k": ("≤ 25", lambda v, _: v <= 25),
    "compile_ms_1m": ("≤ 100", lambda v, _: v <= 100),
    "cached_load_ms": ("≤ 1", lambda v, _: v <= 1),
    "instantiate_us": ("≤ 5000 (seed)", lambda v, _: v <= 5000),
    "pool_acquire_us": ("≤ 2", lambda v, _: v <= 2),
    "call_overhead_us": ("≤ 10000 (seed)", lambda v, _: v <= 10_000),
    "host_call_us": ("≤ 1", lambda v, _: v <= 1),
    "fuel_overhead_ratio": ("≤ 1.3", lambda v, _: v <= 1.3),
    "engine_tx_per_s": ("≥ 50,000 and ≥ 5× baseline", lambda v, d: v >= 50_000
                        and _ratio_of("baseline_engine_tx_per_s", 5)(v, d)),
    "e2e_tx_per_s_single": ("≥ 0.8× arq no-op", _ratio_of("arq_noop_jobs_per_s", 0.8)),
    "e2e_tx_per_s_batch": ("≥ 20,000", lambda v, _: v >= 20_000),
    "latency_p99_ms": ("≤ 10", lambda v, _: v <= 10),
    "fee_fairness_ratio": ("≤ 2", lambda v, _: v <= 2),
    "compile_bomb_ms": ("≤ 2000", lambda v, _: v <= 2_000),
    "compile_worst_ms": ("≤ 2000", lambda v, _: v <= 2_000),
    "tight_loop_max_fee_s": ("< default timeout (2 s)", lambda v, _: v < 2),
    "worst_case_s": ("≤ 1 (half the default timeout)", lambda v, _: v <= 1),
    "commit_digest_match": ("true (== sequential)", lambda v, _: v is True),
    "commit_growth_100k": ("≤ 1.2", lambda v, _: v <= 1.2),
    "high_conflict_vs_sequential": ("≤ 3", lambda v, _: v <= 3),
    "redis_cpu_us_per_tx": ("≤ 10", lambda v, _: v <= 10),
    "farm_cpu_us_per_tx": ("≤ 3× engine_exec_us_per_tx",
                           _ratio_of("engine_exec_us_per_tx", 3, at_least=False)),
    "soak_p99_ms": ("≤ 1000 (half load, blocks every 5 s)", lambda v, _: v <= 1_000),
    "scale_2w_vs_1w": ("≥ 1.8", lambda v, _: v >= 1.8),
    "worker_share_min": ("≥ 0.4", lambda v, _: v >= 0.4),
}


def in_process(rep: Report, scale_name: str, redis_url: str | None = None) -> None:
    """Every figure that needs no Redis (the smoke test runs this at scale `tiny`)."""
    from bench import budget_bench, engine_bench, memory, workloads

    scale = SCALES[scale_name]
    with bench_settings() as settings:
        rep.progress(f"scale {scale_name}: compile (generating ~100 KB and ~1 MB modules) ...")
        engine_bench.compile_figures(rep, settings, scale)
        rep.progress("instances and calls ...")
        engine_bench.instance_figures(rep, settings, scale)
        engine_bench.host_call_figures(rep, settings, scale)
        rep.progress("fuel overhead (hash, sort, sieve, matmul kernels) ...")
        engine_bench.fuel_figures(rep, settings, scale)
        rep.progress("token transfers in-process (engine, then the public-API baseline) ...")
        engine_bench.tx_figures(rep, settings, scale)
        rep.progress("workload classes: ns per fee unit ...")
        workloads.fee_figures(rep, settings, scale, redis_url)
        rep.progress("compile bombs, the compile budget at its limits, the largest fee limit ...")
        budget_bench.budget_figures(rep, settings)
        rep.progress("executor memory (spawned process, 10 contracts) ...")
        memory.memory_figures(rep, settings.cache_dir)


def run(scale_name: str, json_path: Path | None, farm: bool = True,
        quiet: bool = False) -> dict[str, Any]:
    from producer import resolve_redis

    rep = Report(quiet=quiet)
    url, server = resolve_redis(None) if farm else (None, None)
    try:  # distinct reads through the farm's Redis state view, when there is a Redis
        in_process(rep, scale_name, url)
    finally:
        if server is not None:
            server.stop()
    if farm:
        rep.progress("end to end and block commit: Redis + 2 workers ...")
        from bench.commit_bench import commit_figures
        from bench.farm_bench import farm_figures
        from bench.latency_soak import soak_figures
        from bench.state_bench import state_figures

        try:
            farm_figures(rep, SCALES[scale_name],
                         parts=[commit_figures, state_figures, soak_figures])
        except Exception as exc:  # the in-process figures still count: report, go on
            rep.note(f"end-to-end run failed: {type(exc).__name__}: {exc}")
        rep.progress("scale-out: a heavy block on 1 worker, then on 2 ...")
        from bench.scale_bench import scale_figures

        try:
            scale_figures(rep, scale_name)
        except Exception as exc:
            rep.note(f"scale-out run failed: {type(exc).__name__}: {exc}")
    else:
        rep.note("end-to-end figures skipped (--no-farm)")
    values = {key: rep.values.get(key) for key in REPORT_KEYS}
    print_table(values, rep)
    details = {"machine": machine(), "scale": scale_name, "extras": rep.extras,
               "notes": rep.notes, "seconds": round(_elapsed(rep), 1)}
    for path in {DEFAULT_OUT, *([json_path] if json_path else [])}:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=1) + "\n")
    DEFAULT_OUT.with_suffix(".details.json").write_text(json.dumps(details, indent=1) + "\n")
    where = ", ".join(str(p) for p in (DEFAULT_OUT, json_path) if p)
    print(f"\nwritten: {where} (+ {DEFAULT_OUT.with_suffix('.details.json')})")
    return values


def _elapsed(rep: Report) -> float:
    import time

    return time.perf_counter() - rep.started


def print_table(values: dict[str, Any], rep: Report, out: Any = None) -> None:
    out = out or sys.stdout
    rows = []
    for key in REPORT_KEYS:
        value = values.get(key)
        target, check = TARGETS.get(key, ("", None))  # type: ignore[arg-type]
        if isinstance(value, dict):
            shown = ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
        else:
            shown = fmt(value)
        status = ""
        if check is not None:
            status = "n/a" if value is None else ("ok" if check(value, values) else "MISS")
        rows.append((key, shown, target, status))
    width = max(len(r[0]) for r in rows)
    vwidth = min(40, max(len(r[1]) for r in rows))
    print(f"\n{'figure':{width}}  {'value':>{vwidth}}  {'target':28}  status", file=out)
    print("-" * (width + vwidth + 40), file=out)
    for key, shown, target, status in rows:
        if len(shown) > vwidth:
            print(f"{key:{width}}  {'':>{vwidth}}  {target:28}  {status}", file=out)
            print(f"    {shown}", file=out)
        else:
            print(f"{key:{width}}  {shown:>{vwidth}}  {target:28}  {status}", file=out)
    if rep.extras:
        print("\ndetails:", file=out)
        for key, value in rep.extras.items():
            print(f"  {key:{width}}  {fmt(value)}", file=out)
    for note in rep.notes:
        print(f"note: {note}", file=out)
    m = machine()
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, wasmtime "
          f"{m['wasmtime']} ({m['host']}); command: {m['command']}", file=out)

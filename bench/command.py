"""`wesfarm bench [--quick] [--json] [--output FILE]` and `wesfarm calibrate`: every
performance figure against same-run baselines, and the fee schedule's calibration
(docs/FEES.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure compile, instantiate, call, host call, fuel, tx/s, latency, memory, fees",
        description="Measure every performance figure with its baseline in the same "
        "run; print a table and write JSON (default bench-results/latest.json). Starts its own "
        "Redis (or uses localhost:6379 under a private key prefix) and 2 workers, and cleans up.",
    )
    p.add_argument("--quick", action="store_true", help="fewer repetitions (under 2 minutes)")
    p.add_argument("--json", action="store_true",
                   help="print the figures as one JSON object at the end")
    p.add_argument("--output", type=Path, metavar="FILE", help="also write the figures here")
    p.add_argument("--no-farm", action="store_true",
                   help="in-process figures only (end-to-end keys are null)")
    p.add_argument("--shards", action="store_true",
                   help="only the farm past one Redis: the realistic-state block on a local "
                   "3-master Redis Cluster, one shard per master (docs/SCALING.md)")
    p.add_argument("--scale", choices=("tiny", "quick", "full"), help=argparse.SUPPRESS)
    p.set_defaults(handler=run_bench)

    p = sub.add_parser(
        "calibrate",
        help="measure time per unit of each fee price; propose a fair schedule",
        description="Measure the time per unit of every price in the fee schedule on this "
        "machine (anchored on 1 instruction = 1 fee unit), propose a schedule under which every "
        "workload class buys about the same time per fee unit, and check it. See docs/FEES.md.",
    )
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--schedule-version", default="wes-fee-next", metavar="NAME",
                   help="version name of the proposed schedule")
    p.add_argument("--json", action="store_true",
                   help="print the full result as one JSON object instead of the tables")
    p.add_argument("--output", type=Path, metavar="FILE", help="also write the full result here")
    p.add_argument("--scale", choices=("tiny", "quick", "full"), help=argparse.SUPPRESS)
    p.set_defaults(handler=run_calibrate)


def run_bench(args: argparse.Namespace) -> int:
    from bench.runner import run

    scale = args.scale or ("quick" if args.quick else "full")
    try:
        if args.shards:
            from bench.shards import run_shards

            values = run_shards(args.output)
        else:
            values = run(scale, args.output, farm=not args.no_farm)
    except KeyboardInterrupt:
        print("wesfarm bench: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(values, sort_keys=True))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from bench.calibrate import calibrate, fees_env, fees_toml
    from bench.common import Report, fmt
    from producer import resolve_redis

    scale = args.scale or ("quick" if args.quick else "full")
    rep = Report()
    url, server = resolve_redis(None)  # distinct reads are timed through a real Redis
    try:
        out = calibrate(scale, rep, args.schedule_version, url)
    except KeyboardInterrupt:
        print("wesfarm calibrate: interrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(out, indent=1) + "\n")
    if args.json:
        print(json.dumps(out))
        return 0
    current, proposed = out["current"], out["proposed"]
    counted = out.get("counted_prices", {})
    print(f"\n{'price':20} {'ns/unit':>10} {'current':>11} {'proposed':>11} {'counted':>11}")
    print("-" * 67)
    for name, value in proposed.items():
        if name == "version":
            continue
        ns = out["ns_per_unit"].get(name)
        shown = f"{counted[name]:,}" if name in out.get("counted_per_unit", {}) else "-"
        print(f"{name:20} {fmt(ns) if ns is not None else '-':>10} {current[name]:>11,} "
              f"{value:>11,} {shown:>11}")
    ups = out["fee_units_per_second"]
    print(f"\n1 fee unit ≈ {1e9 / ups:.4f} ns (a tenth of a fuel unit of dense compute): "
          f"{ups / 1e6 / 1e3:.1f} M fee units ≈ 1 ms on this machine")
    print(f"\n{'workload class':24} {'ns/fee now':>12} {'ns/fee proposed':>16}")
    for name, now in out["ns_per_fee_unit_current"].items():
        print(f"{name:24} {fmt(now):>12} {fmt(out['ns_per_fee_unit_proposed'][name]):>16}")
    print(f"\nfee_fairness_ratio: current {fmt(out['fee_fairness_ratio_current'])}, proposed "
          f"{fmt(out['fee_fairness_ratio_proposed'])}, counted schedule "
          f"{fmt(out.get('fee_fairness_ratio_counted'))} (target ≤ 2; the data-bound classes "
          "apart)")
    for note in out["notes"]:
        print(f"note: {note}")
    prices = {k: v for k, v in proposed.items() if k != "version"}
    print("\n# settings file (WESFARM_CONFIG_FILE):")
    print(fees_toml(prices, proposed["version"]))
    print("\n# or environment variables:")
    print(fees_env(prices, proposed["version"]))
    return 0

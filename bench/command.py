"""`wesfarm bench [--quick] [--json FILE]` and `wesfarm calibrate`: every performance figure
against same-run baselines, and the fee schedule's calibration (docs/FEES.md)."""

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
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    p.add_argument("--no-farm", action="store_true",
                   help="in-process figures only (end-to-end keys are null)")
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
    p.add_argument("--version", default="wes-fee-3", help="version name of the proposed schedule")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the full result here")
    p.add_argument("--scale", choices=("tiny", "quick", "full"), help=argparse.SUPPRESS)
    p.set_defaults(handler=run_calibrate)


def run_bench(args: argparse.Namespace) -> int:
    from bench.runner import run

    scale = args.scale or ("quick" if args.quick else "full")
    try:
        run(scale, args.json, farm=not args.no_farm)
    except KeyboardInterrupt:
        print("wesfarm bench: interrupted", file=sys.stderr)
        return 130
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from bench.calibrate import calibrate, fees_env, fees_toml
    from bench.common import Report, fmt

    scale = args.scale or ("quick" if args.quick else "full")
    rep = Report()
    try:
        out = calibrate(scale, rep, args.version)
    except KeyboardInterrupt:
        print("wesfarm calibrate: interrupted", file=sys.stderr)
        return 130
    current, proposed = out["current"], out["proposed"]
    print(f"\n{'price':20} {'ns/unit':>12} {'current':>10} {'proposed':>10}")
    print("-" * 56)
    for name, value in proposed.items():
        if name == "version":
            continue
        ns = out["ns_per_unit"].get(name)
        print(f"{name:20} {fmt(ns) if ns is not None else '-':>12} {current[name]:>10,} "
              f"{value:>10,}")
    ups = out["fee_units_per_second"]
    print(f"\n1 fee unit = 1 fuel unit ≈ {1e9 / ups:.4f} ns: {ups / 1e9:.2f} G fee units per "
          f"second, {ups / 1e3 / 1e6:.1f} M fee units ≈ 1 ms on this machine")
    extras = out["extras"]
    print(f"a page filled and read once: {fmt(extras.get('page_filled_and_read_ns'))} ns beyond "
          "its fuel; a hash call beyond the host call: "
          f"{fmt(extras.get('hash_call_ns'))} ns (folded into hash_byte at 1 KiB; see "
          "docs/FEES.md)")
    token = out["token_transfer"]
    print(f"token transfer: {fmt(token['us'])} µs, fee {token['fee_current']:,} now, "
          f"{token['fee_proposed']:,} proposed")
    print(f"\n{'workload class':18} {'ns/fee now':>12} {'ns/fee proposed':>16}")
    for name, now in out["ns_per_fee_unit_current"].items():
        print(f"{name:18} {fmt(now):>12} {fmt(out['ns_per_fee_unit_proposed'][name]):>16}")
    print(f"\nfee_fairness_ratio (median runs): current {fmt(out['fee_fairness_ratio_current'])}, "
          f"proposed {fmt(out['fee_fairness_ratio_proposed'])} (target ≤ 2)")
    print(f"fee_fairness_ratio (fastest runs): current "
          f"{fmt(out['fee_fairness_ratio_current_best'])}, proposed "
          f"{fmt(out['fee_fairness_ratio_proposed_best'])}")
    prices = {k: v for k, v in proposed.items() if k != "version"}
    print("\n# settings file (WESFARM_CONFIG_FILE):")
    print(fees_toml(prices, proposed["version"]))
    print("\n# or environment variables:")
    print(fees_env(prices, proposed["version"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0

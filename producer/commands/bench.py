"""`wesfarm bench [--quick] [--json FILE]`: every performance figure against same-run baselines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure compile, instantiate, call, host call, fuel, tx/s, latency, memory, fees",
        description="Measure every performance figure of issue 5 with its baseline in the same "
        "run; print a table and write JSON (default bench-results/latest.json). Starts its own "
        "Redis (or uses localhost:6379 under a private key prefix) and 2 workers, and cleans up.",
    )
    p.add_argument("--quick", action="store_true", help="fewer repetitions (under 2 minutes)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    p.add_argument("--no-farm", action="store_true",
                   help="in-process figures only (end-to-end keys are null)")
    p.add_argument("--scale", choices=("tiny", "quick", "full"), help=argparse.SUPPRESS)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from producer.bench.runner import run as run_bench

    scale = args.scale or ("quick" if args.quick else "full")
    try:
        run_bench(scale, args.json, farm=not args.no_farm)
    except KeyboardInterrupt:
        print("wesfarm bench: interrupted", file=sys.stderr)
        return 130
    return 0

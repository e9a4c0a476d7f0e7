"""Shared bench plumbing: scales, timing helpers, a private engine, progress and the table."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "contracts"
TOKEN = EXAMPLES / "token" / "token.wasm"


@dataclass(frozen=True, slots=True)
class Scale:
    """How much work each figure gets (repetitions for medians, loop sizes)."""

    name: str
    reps: int  # medians over this many repetitions
    compile_reps: int
    batch: int  # operations timed together (instantiate, acquire, execute)
    host_loop: int  # block_height calls per execution
    kernel_reps: int
    tx: int  # token transfers per round
    tx_rounds: int
    baseline_tx: int
    workload_reps: int
    workload_size: float  # multiplies workload loop counts
    farm_single: int
    farm_batch: int
    farm_noop: int
    latency_jobs: int
    commit_txs: int  # transfers per block of the commit figures (low / high conflict)


SCALES = {
    "tiny": Scale("tiny", 3, 1, 8, 2_000, 1, 200, 2, 100, 2, 0.1, 100, 500, 200, 50, 60),
    "quick": Scale("quick", 7, 3, 32, 20_000, 3, 3_000, 3, 1_000, 5, 1.0, 1_500, 20_000, 2_000,
                   300, 300),
    "full": Scale("full", 15, 7, 64, 50_000, 7, 10_000, 5, 3_000, 9, 1.0, 5_000, 60_000,
                  5_000, 1_500, 1_000),
}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of `fn` takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def repeat(fn: Callable[[], Any], reps: int) -> list[float]:
    """Seconds per call, `reps` times (one untimed warm-up call first)."""
    fn()
    gc.collect()
    return [timed(fn) for _ in range(reps)]


@contextmanager
def bench_settings(**overrides: Any) -> Iterator[Settings]:
    """Settings (environment and file apply) with a private, temporary artifact cache."""
    with tempfile.TemporaryDirectory(prefix="wesfarm-bench-") as tmp:
        yield load_settings(cache_dir=Path(tmp), **overrides)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "wasmtime": version("wasmtime"),
        "platform": platform.platform(),
        "command": " ".join(["wesfarm", *sys.argv[1:]]) if sys.argv else "wesfarm bench",
    }


class Report:
    """Collects figures, prints progress as they arrive, prints the table at the end."""

    def __init__(self, quiet: bool = False) -> None:
        self.values: dict[str, Any] = {}
        self.extras: dict[str, Any] = {}
        self.notes: list[str] = []
        self.quiet = quiet
        self.started = time.perf_counter()

    def progress(self, text: str) -> None:
        if not self.quiet:
            elapsed = time.perf_counter() - self.started
            print(f"[{elapsed:6.1f}s] {text}", file=sys.stderr, flush=True)

    def set(self, key: str, value: Any, detail: str = "") -> None:
        self.values[key] = value
        shown = fmt(value) if not isinstance(value, dict) else ", ".join(
            f"{k}={fmt(v)}" for k, v in value.items())
        self.progress(f"{key} = {shown}" + (f"  ({detail})" if detail else ""))

    def extra(self, key: str, value: Any) -> None:
        self.extras[key] = value
        self.progress(f"  · {key} = {fmt(value)}")

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.progress(f"  note: {text}")


def fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def rounded(value: float) -> float:
    """Four significant digits: enough for a noisy machine, short in JSON."""
    if value == 0 or value != value:
        return value
    from math import floor, log10

    digits = 3 - floor(log10(abs(value)))
    return round(value, max(digits, 0))

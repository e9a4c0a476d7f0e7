"""Engine-side counters: plain numbers a worker turns into Prometheus metrics."""

from __future__ import annotations

from collections import Counter
from typing import Any


class EngineCounters:
    def __init__(self) -> None:
        self.by_status: Counter[str] = Counter()
        self.cache: Counter[str] = Counter()
        self.compile_seconds = 0.0
        self.exec_seconds = 0.0
        self.exec_max_seconds = 0.0
        self.pool_refills = 0

    def record(self, status: str, seconds: float) -> None:
        self.by_status[status] += 1
        self.exec_seconds += seconds
        self.exec_max_seconds = max(self.exec_max_seconds, seconds)

    def snapshot(self, pool_hits: int, pool_misses: int) -> dict[str, Any]:
        executions = sum(self.by_status.values())
        return {
            "executions": executions,
            "by_status": dict(sorted(self.by_status.items())),
            "cache": {k: self.cache[k] for k in ("memory_hit", "disk_hit", "compiled")},
            "compile_seconds": self.compile_seconds,
            "exec_seconds": self.exec_seconds,
            "exec_mean_us": self.exec_seconds / executions * 1e6 if executions else 0.0,
            "exec_max_us": self.exec_max_seconds * 1e6,
            "pool": {"hits": pool_hits, "misses": pool_misses, "refills": self.pool_refills},
        }

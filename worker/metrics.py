"""Prometheus metrics of one worker process (a private CollectorRegistry per worker).

Executors are subprocesses: their engine counters (compile cache, warm pools,
compiles...) come back as deltas in every execute reply and are added here, so the
worker's endpoint counts across all of its executors, including dead ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0)

# engine.get_metrics() leaves (flattened `a.b`) that are not counters: never summed.
NOT_COUNTERS = frozenset({"exec_mean_us", "exec_max_us"})


class FarmMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.txs = Counter("wesfarm_txs", "Transactions by result status", ["status"], registry=r)
        self.jobs = Counter(
            "wesfarm_jobs", "arq jobs by function and outcome", ["function", "status"], registry=r
        )
        self.fee_used = Counter(
            "wesfarm_fee_used", "Fee units charged (new results only)", registry=r
        )
        self.duplicates = Counter(
            "wesfarm_duplicate_deliveries",
            "Txs delivered again whose result already existed",
            registry=r,
        )
        self.latency = Histogram(
            "wesfarm_execution_seconds",
            "Executor round trip per transaction batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.job_latency = Histogram(
            "wesfarm_job_seconds",
            "Job function wall time",
            ["function"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "wesfarm_queue_wait_seconds",
            "Enqueue to start of the job function",
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.engine = Counter(
            "wesfarm_engine_events", "Engine counters summed over executors", ["event"], registry=r
        )
        self.cache = Counter(
            "wesfarm_compile_cache",
            "Compile cache lookups: memory_hit, disk_hit, miss",
            ["result"],
            registry=r,
        )
        self.pool = Counter(
            "wesfarm_instance_pool", "Warm instance pool takes", ["result"], registry=r
        )
        self.compile_seconds = Counter(
            "wesfarm_compile_seconds", "Time executors spent compiling", registry=r
        )
        self.compiles = Counter("wesfarm_compiles", "Modules compiled by executors", registry=r)
        self.artifact_loads = Counter(
            "wesfarm_artifact_loads", "Compiled artifacts loaded from disk", registry=r
        )
        self.restarts = Counter(
            "wesfarm_executor_restarts", "Executor restarts by reason", ["reason"], registry=r
        )
        self.timeouts = Counter(
            "wesfarm_executor_timeouts", "Executor hard kills after the deadline", registry=r
        )
        self.inflight = Gauge(
            "wesfarm_inflight_txs", "Transactions inside executors now", registry=r
        )
        self.executors = Gauge("wesfarm_executors_alive", "Executors ready or busy", registry=r)
        self.queue_depth = Gauge("wesfarm_queue_depth", "Jobs waiting on the queue (each "
                                 "worker's last look, once a second)", registry=r)
        self._targets: dict[str, tuple[Any, ...]] = {}

    def serve(self, port: int, addr: str) -> None:
        """Serve /metrics on `addr`:`port` (port 0: not at all)."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)

    def engine_delta(self, delta: Mapping[str, float]) -> None:
        """Add one executor's counter growth (see engine/counters.py for the names)."""
        for name, value in delta.items():
            if isinstance(value, int | float) and value > 0:
                targets = self._targets.get(name)
                if targets is None:
                    targets = self._targets[name] = self._targets_for(name)
                for counter in targets:
                    counter.inc(value)

    def _targets_for(self, name: str) -> tuple[Any, ...]:
        """The counters one engine counter feeds (computed once per name)."""
        if name in NOT_COUNTERS:
            return ()
        targets: list[Any] = [self.engine.labels(event=name)]
        group, _, leaf = name.partition(".")
        if group == "cache" and leaf:  # memory_hit, disk_hit, compiled (= a miss)
            targets.append(self.cache.labels(result="miss" if leaf == "compiled" else leaf))
            if leaf == "compiled":
                targets.append(self.compiles)
            elif leaf == "disk_hit":
                targets.append(self.artifact_loads)
        elif group == "pool" and leaf in ("hits", "misses"):
            targets.append(self.pool.labels(result="hit" if leaf == "hits" else "miss"))
        elif name == "compile_seconds":
            targets.append(self.compile_seconds)
        return tuple(targets)

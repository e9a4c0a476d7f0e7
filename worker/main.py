"""Run one wesfarm worker: an arq Worker on uvloop, its executors and its metrics endpoint."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import disable_created_metrics

from config import Settings
from worker.arq_config import worker_kwargs
from worker.metrics import FarmMetrics

log = logging.getLogger("wesfarm.worker")


class StartupError(Exception):
    """The worker cannot start; the message says why and what to change."""


def run_worker(settings: Settings, redis_url: str, burst: bool = False) -> int:
    """Blocks until the worker stops (SIGTERM/SIGINT drain, or an empty queue in burst mode)."""
    import uvloop

    from worker.claim import ClaimingWorker

    # arq's Worker captures the event loop in its constructor: uvloop must be current first.
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` twin of every series
    metrics = FarmMetrics()
    try:
        metrics.serve(settings.metrics_port, settings.metrics_host)
    except OSError as exc:
        raise StartupError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: "
            f"{exc.strerror or exc} (another worker there? set --metrics-port, 0 for none)"
        ) from None
    if settings.metrics_port:
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    worker = ClaimingWorker(**worker_kwargs(settings, redis_url, burst, ctx={"metrics": metrics}))
    worker.lease_ms = settings.lease_ms
    try:
        worker.run()
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    log.info(
        "worker done: %d jobs complete, %d failed, %d retried",
        worker.jobs_complete,
        worker.jobs_failed,
        worker.jobs_retried,
    )
    return 0

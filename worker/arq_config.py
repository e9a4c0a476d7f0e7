"""arq's Worker settings for this farm, built from config.Settings."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from config import Settings
from worker import jobs
from worker.protocol import (
    FN_BATCH,
    FN_EXECUTE,
    FN_REJECT,
    health_check_key,
    job_deserializer,
    job_serializer,
)

KEEP_RESULT_S = 3600
# A worker that starts before Redis (or while it restarts) waits for it, a try a second.
CONNECT_TRIES = 3600


def worker_kwargs(
    settings: Settings, redis_url: str, burst: bool = False, ctx: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments for arq.Worker (the WorkerSettings of this farm)."""
    from arq.connections import RedisSettings
    from arq.worker import func

    return {
        "functions": [
            func(jobs.execute, name=FN_EXECUTE, max_tries=jobs.MAX_TRIES),
            func(jobs.execute_batch, name=FN_BATCH, max_tries=jobs.MAX_TRIES),
            func(jobs.reject_payload, name=FN_REJECT, max_tries=jobs.MAX_TRIES),
        ],
        "redis_settings": replace(RedisSettings.from_dsn(redis_url), conn_retries=CONNECT_TRIES),
        "queue_name": settings.queue_name,
        "job_serializer": job_serializer,
        "job_deserializer": job_deserializer,
        "poll_delay": settings.poll_delay_s,
        "max_jobs": settings.max_jobs,
        "job_timeout": settings.job_timeout_s,
        "keep_result": KEEP_RESULT_S,
        "max_tries": jobs.MAX_TRIES,
        "health_check_interval": settings.health_check_interval_s,
        "health_check_key": health_check_key(settings.queue_name),
        "handle_signals": True,
        # SIGTERM/SIGINT: stop taking jobs, let running ones finish (up to the job
        # timeout), then cancel the rest (arq re-queues them) and run on_shutdown.
        "job_completion_wait": math.ceil(settings.job_timeout_s),
        "on_startup": jobs.startup,
        "on_shutdown": jobs.shutdown,
        "burst": burst,
        "log_results": False,
        "ctx": {"settings": settings, "redis_url": redis_url, **(ctx or {})},
    }

"""arq worker configuration built from config.Settings, and the msgpack job (de)serializers.

No pickle anywhere on the Redis path: arq's default (pickle) would let anyone who can
write to Redis run code on every worker. Producers must enqueue with the same
`job_serializer` (they may import it from here) and with `_job_id=tx_id` for
`execute` jobs; batch job ids should start with BATCH_JOB_PREFIX.

A payload that cannot be decoded does not reach arq as an exception: the
deserializer turns it into a call of the `reject_payload` function, which writes an
`invalid` Result under the job id (= the tx id) and lets the worker carry on.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import msgpack

from config import Settings

FN_EXECUTE = "execute"
FN_BATCH = "execute_batch"
FN_REJECT = "reject_payload"
BATCH_JOB_PREFIX = "batch:"
MAX_TRIES = 5
KEEP_RESULT_S = 3600
_JOB_FIELDS = ("t", "f", "a", "k", "et")


def _default(obj: Any) -> Any:
    """What msgpack cannot encode natively (arq puts exceptions and datetimes in results)."""
    if isinstance(obj, BaseException):
        return {"exception": type(obj).__name__, "message": str(obj)}
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    return repr(obj)


def job_serializer(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, default=_default)  # type: ignore[no-any-return]


def _rejected(reason: str) -> dict[str, Any]:
    return {"t": 1, "f": FN_REJECT, "a": [reason], "k": {}, "et": int(time.time() * 1000)}


def job_deserializer(data: bytes) -> dict[str, Any]:
    """Decode an arq job or result; an undecodable job becomes a `reject_payload` call."""
    try:
        decoded = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        return _rejected(f"job payload is not valid msgpack: {type(exc).__name__}: {exc}"[:500])
    if not isinstance(decoded, dict):
        return _rejected(f"job payload must be a map, got {type(decoded).__name__}")
    missing = [k for k in _JOB_FIELDS if k not in decoded]
    if missing:
        return _rejected(f"job payload lacks arq fields {missing}")
    if not isinstance(decoded["f"], str) or not isinstance(decoded["k"], dict):
        return _rejected("job payload has a mistyped function name or kwargs")
    if not isinstance(decoded["a"], list | tuple):
        return _rejected("job payload arguments are not a list")
    # arq's own enqueue_job writes t=None (no try yet); anything else must be an int.
    if not isinstance(decoded["t"], int | None) or not isinstance(decoded["et"], int):
        return _rejected("job payload has a mistyped try count or enqueue time")
    return decoded


def health_check_key(settings: Settings) -> str:
    return f"{settings.queue_name}:health-check"


def worker_kwargs(
    settings: Settings, redis_url: str, burst: bool = False, ctx: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments for arq.Worker (the WorkerSettings of this farm)."""
    from arq.connections import RedisSettings
    from arq.worker import func

    from worker import jobs

    return {
        "functions": [
            func(jobs.execute, name=FN_EXECUTE, max_tries=MAX_TRIES),
            func(jobs.execute_batch, name=FN_BATCH, max_tries=MAX_TRIES),
            func(jobs.reject_payload, name=FN_REJECT, max_tries=MAX_TRIES),
        ],
        "redis_settings": RedisSettings.from_dsn(redis_url),
        "queue_name": settings.queue_name,
        "job_serializer": job_serializer,
        "job_deserializer": job_deserializer,
        "poll_delay": settings.poll_delay_s,
        "max_jobs": settings.max_jobs,
        "job_timeout": settings.job_timeout_s,
        "keep_result": KEEP_RESULT_S,
        "max_tries": MAX_TRIES,
        "health_check_interval": settings.health_check_interval_s,
        "health_check_key": health_check_key(settings),
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

"""arq's own keys under the farm's prefix (worker/protocol.py's `{p}:arq:...`)."""

from __future__ import annotations

import arq.connections
import arq.jobs
import arq.worker

from worker.protocol import Keys

# arq 0.28's key names: module constants, read where they are used (pinned exactly, so a
# rename fails tests/worker/test_protocol.py, not a farm). Per constant, its Keys.arq kind.
ARQ_KEY_CONSTANTS = {"job_key_prefix": "job:", "result_key_prefix": "result:",
                     "in_progress_key_prefix": "in-progress:", "retry_key_prefix": "retry:",
                     "abort_jobs_ss": "abort"}


def in_progress_prefix() -> str:
    """arq's in-progress key prefix as this process's arq uses it (namespaced or not)."""
    return str(getattr(arq.worker, "in_progress_key_prefix"))  # noqa: B009  # patched


def arq_key(constant: str, job_id: str) -> str:
    """A job's arq key of one kind (an ARQ_KEY_CONSTANTS name), as this process's arq
    names it."""
    return str(getattr(arq.worker, constant)) + job_id


def namespace_arq(prefix: str) -> None:
    """Point this process's arq at the farm's keys (`{prefix}:arq:...`): a worker process
    serves one farm, so two farms on one Redis never share a job key."""
    keys = Keys(prefix)
    for module in (arq.worker, arq.jobs, arq.connections):
        for name, kind in ARQ_KEY_CONSTANTS.items():
            if hasattr(module, name):
                setattr(module, name, keys.arq(kind))

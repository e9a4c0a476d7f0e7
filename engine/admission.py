"""What refuses a job before anything runs (the job alone, whatever the state and code),
and what an execution is charged before its contract runs."""

from __future__ import annotations

from config import PolicyLimits
from engine.errors import InvalidJob
from engine.fees import FeeSchedule, paid_pages
from engine.model import Job, ModuleInfo, access_list
from engine.pool import INSTANTIATE_FUEL


def refusal(job: Job, limits: PolicyLimits, default_timeout_ms: int) -> InvalidJob | None:
    """Why the job is invalid by itself (None: it is not): a fee limit out of range, or one
    its timeout could not run out, or a bad access or write list."""
    if not (type(job.fee_limit) is int and 0 < job.fee_limit <= limits.max_fee_limit):
        return InvalidJob(f"fee_limit {job.fee_limit!r} outside 1..{limits.max_fee_limit}",
                          "bad_fee_limit")
    timeout_ms = job.timeout_ms or default_timeout_ms
    if job.fee_limit > timeout_ms * limits.max_fee_per_timeout_ms:
        return InvalidJob(
            f"fee_limit {job.fee_limit} cannot run within a timeout of {timeout_ms} ms "
            f"(at most {limits.max_fee_per_timeout_ms:,} fee units per ms of it)",
            "fee_limit_outlasts_timeout")
    try:
        access_list(job.access)  # as from_wire checks it: the same job, the same verdict
        access_list(job.writes, "writes")
    except InvalidJob as exc:
        return exc
    return None


def bringing_in(schedule: FeeSchedule, info: ModuleInfo) -> int:
    """An execution's first charge: a warm instance, the call, the module by its size."""
    return schedule.execution + info.size * schedule.module_byte


def first_charges(schedule: FeeSchedule, info: ModuleInfo) -> int:
    """What an execution of the module is charged before its declared keys are read, at
    most: bringing it in, its initial memory and table, instantiating it (what its passive
    segments consume, at most INSTANTIATE_FUEL)."""
    return (bringing_in(schedule, info)
            + paid_pages(schedule, info.memory_pages) * schedule.memory_page
            + info.table_elements * schedule.table_element
            + INSTANTIATE_FUEL * schedule.instruction)

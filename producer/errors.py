"""The producer's errors (re-exported by producer.client)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from engine.model import Job, Result
from producer.exits import EXIT_FAILED, EXIT_USAGE


class DeployError(Exception):
    """A deployment refused: `status` is rejected / invalid / conflict; `reasons` say why."""

    def __init__(self, status: str, reasons: Sequence[str]) -> None:
        super().__init__(f"{status}: " + "; ".join(reasons))
        self.status = status
        self.reasons = list(reasons)


class CommitError(RuntimeError):
    """A block that cannot be committed (already committed, a tx that keeps going stale)."""


class WaitTimeout(TimeoutError):
    """Not every tx had a result in time; `done` holds those that did."""

    def __init__(self, done: dict[str, Result], missing: list[str]) -> None:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        super().__init__(f"{len(missing)} tx(s) without a result: {shown}")
        self.done = done
        self.missing = missing


class TxIdReused(ValueError):
    """A tx id already ran as another transaction: its Result is not this job's."""

    exit_code = EXIT_USAGE

    def __init__(self, tx_ids: list[str]) -> None:
        shown = ", ".join(tx_ids[:5]) + (" ..." if len(tx_ids) > 5 else "")
        super().__init__(f"{len(tx_ids)} tx id(s) already ran with a different job (contract, "
                         f"function, input, fee limit, caller, mode or timeout): {shown}; "
                         "a tx id names one transaction, use fresh ones")
        self.tx_ids = tx_ids

    def __reduce__(self) -> tuple[type[TxIdReused], tuple[list[str]]]:
        return (TxIdReused, (self.tx_ids,))  # raised again in the parent of a commit child


def refuse_reused(jobs: Iterable[Job], results: Mapping[str, Result]) -> None:
    """Raise TxIdReused for the jobs whose Result is another job's."""
    reused = [job.tx_id for job in jobs
              if (r := results.get(job.tx_id)) is not None and r.job and r.job != job.digest()]
    if reused:
        raise TxIdReused(reused)


class JobIdTaken(RuntimeError):
    """arq already ran a job with this id (it keeps results for an hour) but no result
    exists under our key prefix: the tx id was used by another farm on this Redis."""

    exit_code = EXIT_USAGE

    def __init__(self, tx_ids: list[str], prefix: str) -> None:
        shown = ", ".join(tx_ids[:5]) + (" ..." if len(tx_ids) > 5 else "")
        super().__init__(
            f"{len(tx_ids)} tx id(s) already ran on this Redis but have no result under "
            f"prefix {prefix!r}: {shown}; use fresh tx ids"
        )
        self.tx_ids = tx_ids


class FarmUnavailable(RuntimeError):
    """Redis stayed unreachable for the client's whole patience (`redis_patience_s`)."""

    exit_code = EXIT_FAILED  # a command that meets it ends with this one line

    def __init__(self, url: str, waited_s: float, cause: BaseException) -> None:
        super().__init__(f"redis at {url} unavailable for {waited_s:.0f} s: {cause}")
        self.url = url
        self.waited_s = waited_s
        self.cause = cause

    def __reduce__(self) -> tuple[type[FarmUnavailable], tuple[str, float, BaseException]]:
        # raised in the commit's child process (producer/commit_runner.py), pickled back
        return FarmUnavailable, (self.url, self.waited_s, RuntimeError(str(self.cause)))

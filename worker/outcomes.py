"""Results the worker makes itself, when the engine could not: a dead or hung executor,
bad arguments at the arq boundary, a payload that was not msgpack.

They use the engine's own Result/FeeReport types, so they travel and store exactly
like engine results. Nothing here is charged: fee used is 0 (a timeout is not a
consensus result; an executor crash is not the contract's fault).
"""

from __future__ import annotations

import signal
from typing import Any

from engine.model import MAX_TX_ID_BYTES, FeeReport, Result


def tx_id_of(raw: Any) -> str | None:
    """The job map's tx id if it is usable as a result key, else None."""
    if isinstance(raw, dict):
        tx_id = raw.get("tx_id")
        if isinstance(tx_id, str) and tx_id and len(tx_id.encode()) <= MAX_TX_ID_BYTES:
            return tx_id
    return None


def fee_limit_of(raw: Any) -> int:
    if isinstance(raw, dict):
        limit = raw.get("fee_limit")
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < 2**63:
            return limit
    return 0


def timeout_ms_of(raw: Any, default_ms: int, max_ms: int) -> int:
    """The wall-clock budget the engine will give this job (as the engine reads it)."""
    if isinstance(raw, dict):
        value = raw.get("timeout_ms")
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= max_ms:
            return value
    return default_ms


def failure(
    raw: Any,
    status: str,
    kind: str,
    message: str,
    schedule: str,
    worker: str = "",
    tx_id: str | None = None,
) -> Result:
    """An uncharged Result for `raw` (fee used 0, nothing read or written)."""
    return Result(
        tx_id=tx_id if tx_id is not None else (tx_id_of(raw) or ""),
        status=status,
        fee=FeeReport(limit=fee_limit_of(raw), used=0, breakdown={}, schedule=schedule),
        error={"kind": kind, "message": message},
        worker=worker,
    )


def describe_exit(returncode: int | None) -> str:
    """`killed by signal SIGKILL (9)` / `exited with status 1` / `still running`."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by signal {name} ({-returncode})"
    return f"exited with status {returncode}"

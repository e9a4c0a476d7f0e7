"""arq's job envelope as this farm writes and reads it: msgpack, never pickle.

arq's default serializer (pickle) would let anyone who can write to Redis run code on
every worker. A job payload that cannot be decoded, or that arq could not run as a job
of this farm (fields, types, try count, enqueue time, function, kwargs, nesting),
becomes a call of `reject_payload`, which writes an `invalid` Result under the job id
(or, for a farm job refused for its envelope, under the tx ids its job maps name).
worker/protocol.py exports all of it with the rest of the wire contract.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

import msgpack
from arq.jobs import serialize_job

FN_EXECUTE = "execute"
FN_BATCH = "execute_batch"
FN_REJECT = "reject_payload"
# arq writes `t: None` unless given `_job_try`; 1 means the same to arq (the worker takes
# max(its retry counter, t)), and the deserializer insists on an integer.
JOB_TRY = 1
_JOB_FIELDS = ("t", "f", "a", "k", "et")
MAX_ENQUEUE_MS = 253_402_300_799_999  # 9999-12-31: what arq can turn into a datetime
MAX_ARG_DEPTH = 8  # a batch is 4 deep (args, list, job map, context)
MAX_JOB_TXS = 10_000  # txs a batch job may hold (config's batch_size bound)


def _default(obj: Any) -> Any:
    """What msgpack cannot encode natively (arq puts exceptions and datetimes in results)."""
    if isinstance(obj, BaseException):
        return {"exception": type(obj).__name__, "message": str(obj)}
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    return repr(obj)


class TxMaps(list):  # type: ignore[type-arg]
    """A batch's job maps as arq hands them to execute_batch. arq logs `repr` of every
    job's arguments when it starts one (then cuts it to 80 characters): for a list of
    256 maps that repr was a measurable share of a worker's CPU."""

    def __repr__(self) -> str:
        return f"<{len(self)} txs>"


def job_serializer(obj: dict[str, Any]) -> bytes:
    """arq's jobs and its records of finished jobs. A job that succeeded wrote its own
    Results, so arq's record of it (kept an hour) keeps no copy of its arguments: they
    were the whole batch, re-encoded by the worker and stored once more per tx."""
    if obj.get("s") is True and "r" in obj and "id" in obj:
        obj = {**obj, "a": []}
    return msgpack.packb(obj, use_bin_type=True, default=_default)  # type: ignore[no-any-return]


def _rejected(reason: str, tx_ids: Sequence[str] = ()) -> dict[str, Any]:
    # The tx ids travel as a keyword argument: no payload can forge one (this function
    # refuses every payload with keyword arguments).
    kwargs = {"tx_ids": list(tx_ids)} if tx_ids else {}
    return {"t": 1, "f": FN_REJECT, "a": [reason], "k": kwargs, "et": int(time.time() * 1000)}


def _tx_ids(decoded: dict[Any, Any]) -> list[str]:
    """The tx ids an `execute` / `execute_batch` job's maps name (a job refused for its
    envelope still ends its txs, so nobody waits on them)."""
    args, function = decoded.get("a"), decoded.get("f")
    if not isinstance(args, list | tuple):
        return []
    if function == FN_EXECUTE and len(args) == 1:
        maps = [args[0]]
    elif function == FN_BATCH and args and isinstance(args[0], list):
        maps = args[0]  # as execute_batch reads its txs, even called wrongly
    else:
        return []
    return [m["tx_id"] for m in maps[:MAX_JOB_TXS]  # (the rest of an oversized batch: none)
            if isinstance(m, dict) and isinstance(m.get("tx_id"), str) and m["tx_id"]]


def job_deserializer(data: bytes) -> dict[str, Any]:
    """Decode an arq job or result; an undecodable job becomes a `reject_payload` call."""
    try:
        decoded = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        return _rejected(f"job payload is not valid msgpack: {type(exc).__name__}: {exc}"[:500])
    if not isinstance(decoded, dict):
        return _rejected(f"job payload must be a map, got {type(decoded).__name__}")
    refusal = _refusal(decoded)
    if refusal is not None:
        return _rejected(refusal, _tx_ids(decoded))
    args = decoded["a"]
    if decoded["f"] == FN_BATCH and args and type(args[0]) is list:
        decoded["a"] = [TxMaps(args[0]), *args[1:]]
    return decoded


def _refusal(decoded: dict[Any, Any]) -> str | None:
    """Why arq cannot run this job map as a job of this farm (None: it can)."""
    missing = [k for k in _JOB_FIELDS if k not in decoded]
    if missing:
        return f"job payload lacks arq fields {missing}"
    if not isinstance(decoded["f"], str) or not isinstance(decoded["k"], dict):
        return "job payload has a mistyped function name or kwargs"
    if not isinstance(decoded["a"], list | tuple):
        return "job payload arguments are not a list"
    # arq's own enqueue_job writes t=None (no try yet); producers write 1 (JOB_TRY).
    if decoded["t"] not in (None, JOB_TRY) or isinstance(decoded["t"], bool):
        return f"job payload has a mistyped try count {decoded['t']!r:.40} (producers " \
            f"write {JOB_TRY})"
    et = decoded["et"]
    if not isinstance(et, int) or isinstance(et, bool) or not 0 <= et <= MAX_ENQUEUE_MS:
        return "job payload has a mistyped enqueue time (not a time arq can read)"
    if decoded["f"] not in (FN_EXECUTE, FN_BATCH, FN_REJECT):
        return f"job names no function of this farm: {decoded['f'][:64]!r}"
    if decoded["k"]:
        return "job payload has keyword arguments (the farm's jobs take none)"
    if _depth(decoded["a"]) > MAX_ARG_DEPTH:
        return f"job arguments nest deeper than {MAX_ARG_DEPTH}"
    args = decoded["a"]
    if decoded["f"] == FN_BATCH and args and isinstance(args[0], list | tuple) and \
            len(args[0]) > MAX_JOB_TXS:
        return f"a batch of {len(args[0])} txs, more than {MAX_JOB_TXS}"
    return None


def result_record(data: bytes) -> dict[str, Any]:
    """arq's record of a job it finished or failed (serialize_result's map; {} if it is
    not one). Not job_deserializer: that refuses a try count above 1, which the record
    of every job delivered more than once carries."""
    try:
        record = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:
        return {}
    return record if isinstance(record, dict) else {}


_CONTAINERS = frozenset((list, tuple, dict))


def _depth(value: Any) -> int:
    """How deeply lists and maps nest in `value`, counted up to MAX_ARG_DEPTH + 1
    (iteratively: the input is hostile). Only containers are stacked: a batch's leaves
    (strings, bytes, numbers) are most of it, and this runs on every job a worker takes."""
    if type(value) not in _CONTAINERS:
        return 0
    deepest, stack = 1, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        for child in (item.values() if type(item) is dict else item):
            if type(child) in _CONTAINERS:
                if depth == MAX_ARG_DEPTH:
                    return depth + 1
                stack.append((child, depth + 1))
                deepest = max(deepest, depth + 1)
    return deepest


def job_bytes(function: str, args: tuple[Any, ...], enqueue_ms: int) -> bytes:
    """One arq job, exactly as arq 0.28's own enqueue_job serializes it."""
    return serialize_job(function, args, {}, JOB_TRY, enqueue_ms,  # type: ignore[no-any-return]
                         serializer=job_serializer)

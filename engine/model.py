"""Job and Result: the msgpack maps of ARCHITECTURE.md, validated at the boundary.

Bytes stay bytes on the wire. Maps whose order could differ between workers
(read set, write set, fee breakdown) are emitted sorted, so equal results are
equal bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from engine.errors import InvalidJob

_native_pack_result: Callable[[Any], tuple[bytes, bytes] | None] | None
try:  # Result.packed's C path (engine/native/packer.c), when it was built
    from engine._native import pack_result as _native_pack_result
except ImportError:
    _native_pack_result = None

Mode = Literal["call", "view"]
MAX_ADDRESS_BYTES = 64
# No contract lives at these: `{p}:state:seq` is the state version counter, not a
# contract's state hash (worker/protocol.py), and deploy refuses the address.
RESERVED_ADDRESSES = frozenset({"seq"})
MAX_TX_ID_BYTES = 128
MAX_FUNCTION_BYTES = 128
# A job's access list (keys of its contract to fetch before it runs: each is read, and
# charged as a read, before the contract starts, read or not) and its write list (keys
# it may write: the producer runs a tx touching a key an earlier tx of its block may
# write where the block is committed, producer/schedule.py; a hint that never changes a
# result). A real tx declares a handful of keys.
MAX_ACCESS_KEYS = 64
MAX_ACCESS_KEY_BYTES = 256


@dataclass(frozen=True, slots=True)
class Context:
    caller: str = ""
    block_height: int = 0
    block_time: int = 0


@dataclass(frozen=True, slots=True)
class Job:
    tx_id: str
    contract: str
    function: str
    input: bytes = b""
    fee_limit: int = 200_000_000
    context: Context = field(default_factory=Context)
    mode: Mode = "call"
    timeout_ms: int | None = None
    access: tuple[bytes, ...] = ()  # keys its contract will read: fetched at once
    writes: tuple[bytes, ...] = ()  # keys its contract may write: txs after it wait for it

    def digest(self) -> str:
        """What makes this transaction itself, whatever block it runs in: a tx id already
        used for another one is refused (a Result carries its job's digest)."""
        fields = [self.contract, self.function, self.input, self.fee_limit,
                  self.context.caller, self.mode, self.timeout_ms]
        if self.access:  # its declared keys are read and paid for (none: digests as before)
            fields.append(list(self.access))
        return hashlib.sha256(pack(fields)).hexdigest()[:32]

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "tx_id": self.tx_id,
            "contract": self.contract,
            "function": self.function,
            "input": self.input,
            "fee_limit": self.fee_limit,
            "context": {
                "caller": self.context.caller,
                "block_height": self.context.block_height,
                "block_time": self.context.block_time,
            },
            "mode": self.mode,
        }
        if self.timeout_ms is not None:
            wire["timeout_ms"] = self.timeout_ms
        if self.access:
            wire["access"] = list(self.access)
        if self.writes:
            wire["writes"] = list(self.writes)
        return wire

    @classmethod
    def from_wire(cls, raw: Any, max_input: int, max_fee: int, max_timeout_ms: int) -> Job:
        """Validate a decoded job map; raise InvalidJob naming the first bad field."""
        if not isinstance(raw, dict):
            raise InvalidJob(f"job must be a map, got {type(raw).__name__}", "malformed_job")
        tx_id = _text(raw, "tx_id", MAX_TX_ID_BYTES)
        contract = _text(raw, "contract", MAX_ADDRESS_BYTES)
        if contract in RESERVED_ADDRESSES:
            raise InvalidJob(f"contract {contract!r} is a reserved address", "bad_field")
        function = _text(raw, "function", MAX_FUNCTION_BYTES)
        data = raw.get("input", b"")
        if not isinstance(data, bytes):
            raise InvalidJob(f"input must be bytes, got {type(data).__name__}", "bad_field")
        if len(data) > max_input:
            raise InvalidJob(f"input is {len(data)} bytes, limit {max_input}", "input_too_large")
        fee_limit = _int(raw, "fee_limit")
        if not 0 < fee_limit <= max_fee:
            raise InvalidJob(f"fee_limit {fee_limit} outside 1..{max_fee}", "bad_fee_limit")
        ctx_raw = raw.get("context", {})
        if not isinstance(ctx_raw, dict):
            raise InvalidJob("context must be a map", "bad_field")
        context = Context(
            caller=_text(ctx_raw, "caller", MAX_ADDRESS_BYTES, required=False),
            block_height=_int(ctx_raw, "block_height", required=False),
            block_time=_int(ctx_raw, "block_time", required=False),
        )
        mode = raw.get("mode", "call")
        if mode not in ("call", "view"):
            raise InvalidJob(f"mode must be 'call' or 'view', got {mode!r}", "bad_field")
        timeout = raw.get("timeout_ms")
        if timeout is not None:
            timeout = _int(raw, "timeout_ms")
            if not 0 < timeout <= max_timeout_ms:
                raise InvalidJob(f"timeout_ms {timeout} outside 1..{max_timeout_ms}", "bad_field")
        return cls(tx_id, contract, function, data, fee_limit, context, mode, timeout,
                   access_list(raw.get("access", [])),
                   access_list(raw.get("writes", []), "writes"))

    def to_row(self) -> tuple[Any, ...]:
        """The job as one flat row, for a process handing a job it validated to another
        of its own (producer/commit_runner.py): packed, a fraction of pickle's cost."""
        c = self.context
        return (self.tx_id, self.contract, self.function, self.input, self.fee_limit,
                c.caller, c.block_height, c.block_time, self.mode, self.timeout_ms,
                self.access, self.writes)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Job:
        """The job `to_row` gave (trusted: it was validated where it was made)."""
        (tx_id, contract, function, data, fee_limit, caller, height, block_time, mode,
         timeout, access, writes) = row
        return cls(tx_id, contract, function, data, fee_limit,
                   Context(caller, height, block_time), mode, timeout, tuple(access),
                   tuple(writes))


def access_list(value: Any, name: str = "access") -> tuple[bytes, ...]:
    """A job map's access list (`access`, or `writes`), validated: InvalidJob names what
    is wrong with it."""
    if not isinstance(value, list | tuple):
        raise InvalidJob(f"{name} must be a list of keys, got {type(value).__name__}",
                         "bad_field")
    if len(value) > MAX_ACCESS_KEYS:
        raise InvalidJob(f"{name} lists {len(value)} keys, limit {MAX_ACCESS_KEYS}",
                         "bad_field")
    for key in value:
        if not isinstance(key, bytes) or len(key) > MAX_ACCESS_KEY_BYTES:
            raise InvalidJob(f"{name} keys must be bytes of at most {MAX_ACCESS_KEY_BYTES}",
                             "bad_field")
    return tuple(value)


def _text(raw: dict[str, Any], name: str, limit: int, required: bool = True) -> str:
    value = raw.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidJob(f"{name} must be a non-empty string", "bad_field")
    if len(value.encode()) > limit:
        raise InvalidJob(f"{name} is over {limit} bytes", "bad_field")
    return value


def _int(raw: dict[str, Any], name: str, required: bool = True) -> int:
    value = raw.get(name)
    if value is None and not required:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidJob(f"{name} must be an integer", "bad_field")
    if not -(2**63) <= value < 2**63:
        raise InvalidJob(f"{name} does not fit in 64 bits", "bad_field")
    return value


@dataclass(slots=True)
class FeeReport:
    limit: int
    used: int
    breakdown: dict[str, int]
    schedule: str

    @property
    def refunded(self) -> int:
        return self.limit - self.used

    def to_wire(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "used": self.used,
            "refunded": self.refunded,
            "breakdown": dict(sorted(self.breakdown.items())),
            "schedule": self.schedule,
        }


@dataclass(slots=True)
class Result:
    tx_id: str
    status: str
    fee: FeeReport
    return_data: bytes = b""
    error: dict[str, str] | None = None
    events: list[tuple[bytes, bytes]] = field(default_factory=list)
    logs: list[bytes] = field(default_factory=list)
    read_set: dict[bytes, int] = field(default_factory=dict)
    write_set: dict[bytes, bytes | None] = field(default_factory=dict)
    worker: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    job: str = ""  # the digest of the job it is the result of (Job.digest); not consensus
    # What its cross-contract calls (ABI 1.1) touched, per callee contract: the reads
    # (always), the writes and events (on ok). Absent from the wire when empty, so an ABI 1
    # transaction's Result is what it always was.
    call_read_sets: dict[str, dict[bytes, int]] = field(default_factory=dict)
    call_write_sets: dict[str, dict[bytes, bytes | None]] = field(default_factory=dict)
    call_events: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    def reads_by_contract(self, contract: str) -> dict[str, dict[bytes, int]]:
        """Every read of the transaction, by contract (`contract`: its own)."""
        own = {contract: self.read_set} if self.read_set else {}
        return {**own, **self.call_read_sets}

    def writes_by_contract(self, contract: str) -> dict[str, dict[bytes, bytes | None]]:
        """Every write of the transaction, by contract (`contract`: its own)."""
        own = {contract: self.write_set} if self.write_set else {}
        return {**own, **self.call_write_sets}

    def consensus_wire(self) -> dict[str, Any]:
        """Everything two workers must agree on (no worker name, no timings)."""
        return {
            "tx_id": self.tx_id,
            "status": self.status,
            "return_data": self.return_data,
            "error": self.error,
            "fee": self.fee.to_wire(),
            "events": [[topic, data] for topic, data in self.events],
            "logs": self.logs,
            "read_set": dict(sorted(self.read_set.items())),
            "write_set": dict(sorted(self.write_set.items())),
            **self._calls_wire(lambda b: b),
        }

    def _calls_wire(self, data: Callable[[bytes], Any]) -> dict[str, Any]:
        """The call sets as the wire (`data` = bytes as they are) or JSON (hex) has them."""
        if not (self.call_read_sets or self.call_write_sets or self.call_events):
            return {}
        return {"calls": {
            "read_sets": {c: {data(k): v for k, v in sorted(s.items())}
                          for c, s in sorted(self.call_read_sets.items())},
            "write_sets": {c: {data(k): None if v is None else data(v)
                               for k, v in sorted(s.items())}
                           for c, s in sorted(self.call_write_sets.items())},
            "events": [[c, data(t), data(d)] for c, t, d in self.call_events],
        }}

    def to_wire(self) -> dict[str, Any]:
        wire = self.consensus_wire()
        wire["worker"] = self.worker
        wire["timings"] = self.timings
        if self.job:
            wire["job"] = self.job
        return wire

    def consensus_bytes(self) -> bytes:
        return pack(self.consensus_wire())

    def packed(self) -> tuple[bytes, bytes]:
        """The Result as stored (`to_wire` packed) and its fee record (`fee.to_wire`
        packed): in C when engine._native is built and there are no call sets, the same
        bytes as this Python path (tests/engine/test_result_bytes.py)."""
        if _native_pack_result is not None:
            done: tuple[bytes, bytes] | None = _native_pack_result(self)
            if done is not None:
                return done
        wire = self.to_wire()
        return pack(wire), pack(wire["fee"])

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Result:
        fee = raw["fee"]
        return cls(
            tx_id=raw["tx_id"],
            status=raw["status"],
            fee=FeeReport(fee["limit"], fee["used"], dict(fee["breakdown"]), fee["schedule"]),
            return_data=raw["return_data"],
            error=raw["error"],
            events=[(t, d) for t, d in raw["events"]],
            logs=list(raw["logs"]),
            read_set=dict(raw["read_set"]),
            write_set=dict(raw["write_set"]),
            worker=raw.get("worker", ""),
            timings=dict(raw.get("timings", {})),
            job=job if isinstance(job := raw.get("job", ""), str) else "",
            **_calls_from_wire(raw.get("calls")),
        )

    @classmethod
    def from_stored(cls, tx_id: str, data: bytes) -> Result:
        """The Result stored bytes hold. Bytes that hold none (not the farm's: someone
        wrote them there) read as tx_id's uncharged `error`, so they fail nothing else."""
        try:
            result = cls.from_wire(unpack(data))
            why = "another tx's Result"
        except Exception as exc:
            why = type(exc).__name__
        else:
            if result.tx_id == tx_id:
                return result
        return cls(tx_id, "error", FeeReport(0, 0, {}, ""), error={
            "kind": "unreadable_result", "message": f"what is stored as its Result is none: {why}"})

    def to_json(self) -> dict[str, Any]:
        """The `--json` shape: bytes as lowercase hex."""
        return {
            "tx_id": self.tx_id,
            "status": self.status,
            "return_data": self.return_data.hex(),
            "error": self.error,
            "fee": self.fee.to_wire(),
            "events": [{"topic": t.hex(), "data": d.hex()} for t, d in self.events],
            "logs": [line.decode("utf-8", "replace") for line in self.logs],
            "read_set": {k.hex(): v for k, v in sorted(self.read_set.items())},
            "write_set": {
                k.hex(): (None if v is None else v.hex()) for k, v in sorted(self.write_set.items())
            },
            **self._calls_wire(bytes.hex),
            "worker": self.worker,
            "timings": self.timings,
        }

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))


def _calls_from_wire(calls: Any) -> dict[str, Any]:
    if not calls:
        return {}
    return {"call_read_sets": {c: dict(s) for c, s in calls["read_sets"].items()},
            "call_write_sets": {c: dict(s) for c, s in calls["write_sets"].items()},
            "call_events": [(c, t, d) for c, t, d in calls["events"]]}


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """What the engine needs to know about an accepted module."""

    entry_points: tuple[str, ...]
    memory_pages: int
    table_elements: int
    functions: int
    size: int
    memory_max: int  # pages memory.grow may reach: the declared maximum within the limit

    def to_bytes(self) -> bytes:
        return pack([list(self.entry_points), self.memory_pages, self.table_elements,
                     self.functions, self.size, self.memory_max])

    @classmethod
    def from_bytes(cls, data: bytes) -> ModuleInfo:
        entries, pages, table, functions, size, memory_max = unpack(data)
        return cls(tuple(entries), pages, table, functions, size, memory_max)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)

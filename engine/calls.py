"""Cross-contract calls (ABI 1.1 `wes.call`): a transaction's stack of frames.

A call runs the callee as an execution of its own (engine/runtime.py `_run`: priced,
instantiated from the same pools, metered) with a forwarded budget, then joins it to
the caller: its fee always, its reads always, its writes and events only on OK. What a
frame joined is visible to the frames after it (`JoinedState`), and reaches the
transaction only when every frame above it joins too. Both host paths call `Calls.call`
(engine/host.py directly; engine/native/abi.c through the Host's callback).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.abi import (
    CALL_DENIED,
    CALL_NOT_FOUND,
    CALL_OK,
    CALL_OUT_OF_FEE,
    CALL_REVERTED,
    CALL_TRAPPED,
)
from engine.errors import ContractTrap, InternalError, Timeout
from engine.model import Context, Job, Result
from engine.state import StateView

Reads = dict[str, dict[bytes, int]]
Writes = dict[str, dict[bytes, bytes | None]]
Event = tuple[str, bytes, bytes]
STATUS_OF = {"ok": CALL_OK, "reverted": CALL_REVERTED, "out_of_fee": CALL_OUT_OF_FEE,
             "trap": CALL_TRAPPED}


@dataclass(slots=True)
class Joined:
    """What the calls made below one frame joined to it: other contracts' reads (always),
    writes and events (on OK), logs (always, debug only)."""

    reads: Reads = field(default_factory=dict)
    writes: Writes = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    logs: list[bytes] = field(default_factory=list)

    def take(self, contract: str, result: Result, below: Joined, limits: Any,
             caller: Any) -> bool:
        """Join a callee frame (`result` its own execution, `below` what it joined) within
        the limits, counted over the caller's own output and everything joined to it:
        False when its writes or events would pass them (then only its reads and logs
        join: it counts as trapped). Reads past the limit trap the caller."""
        for c, reads in ((contract, result.read_set), *below.reads.items()):
            mine = self.reads.setdefault(c, {})
            for key, version in reads.items():
                mine.setdefault(key, version)
        if sum(map(len, self.reads.values())) > limits.max_read_entries:
            raise ContractTrap(f"wes.call: over {limits.max_read_entries} distinct keys read "
                               "by the transaction's frames (max_read_entries)", "limit")
        self.logs += (result.logs + below.logs)[: max(0, limits.max_logs - len(self.logs))]
        if result.status != "ok":
            return True
        writes = {c: dict(w) for c, w in self.writes.items()}
        for c, new in ((contract, result.write_set), *below.writes.items()):
            writes.setdefault(c, {}).update(new)
        entries, size = _written((*writes.values(), caller.writes))
        events = [(contract, t, d) for t, d in result.events] + below.events
        if (entries > limits.max_write_entries or size > limits.max_write_bytes
                or len(caller.events) + len(self.events) + len(events) > limits.max_events):
            return False
        self.writes = writes
        self.events += events
        return True


def _written(sets: Iterable[Mapping[bytes, bytes | None]]) -> tuple[int, int]:
    """(entries, bytes of keys and values) of write sets (of different contracts)."""
    entries = size = 0
    for writes in sets:
        entries += len(writes)
        size += sum(len(k) + len(v or b"") for k, v in writes.items())
    return entries, size


class JoinedState:
    """The committed state as a frame sees it: the writes of the frames that joined,
    innermost first, then the state. A value written by a frame reads with the committed
    version of its key (what the commit validates)."""

    def __init__(self, base: StateView, layers: list[Joined]) -> None:
        self.base, self.layers = base, layers

    def get(self, contract: str, key: bytes) -> tuple[bytes, int] | None:
        for layer in reversed(self.layers):
            writes = layer.writes.get(contract)
            if writes is not None and key in writes:
                value = writes[key]
                found = self.base.get(contract, key)
                return None if value is None else (value, 0 if found is None else found[1])
        return self.base.get(contract, key)

    def committed_versions(self, contract: str, reads: dict[bytes, int]) -> dict[bytes, int]:
        """A frame's read set with each key a joined frame removed at its committed
        version (the frame saw it absent, as version 0: the commit must validate what the
        state holds, or the transaction would be stale for ever)."""
        removed = {key for layer in self.layers
                   for key, value in layer.writes.get(contract, {}).items() if value is None}
        fixed = dict(reads)
        for key in removed & reads.keys():
            found = self.base.get(contract, key)
            fixed[key] = 0 if found is None else found[1]
        return fixed


class Calls:
    """The call stack of one transaction."""

    def __init__(self, job: Job, state: StateView, limits: Any, timeout_ms: int,
                 run_frame: Callable[[Job, StateView], Result | None]) -> None:
        self.root = job
        self.state = state
        self.limits = limits
        self.max_depth = limits.max_call_depth
        self.deadline = time.perf_counter() + timeout_ms / 1000
        self.run_frame = run_frame  # None: no such contract or entry point
        self.stack: list[str] = [job.contract]
        self.layers: list[Joined] = [Joined()]

    @property
    def joined(self) -> Joined:
        """What the transaction's own frame joined (its result's call sets)."""
        return self.layers[0]

    def finish(self, result: Result) -> Result:
        """The transaction's Result with what its calls joined: reads always, writes and
        events when it ends ok. Its whole output -- its own frame's and every callee's --
        is held to the transaction's limits: past them, it ends `trap` (kind `limit`)."""
        joined, limits = self.joined, self.limits
        if not (joined.reads or joined.logs):  # no call ran (nor joined): its own limits held
            return result
        result.call_read_sets = {c: reads for c, reads in joined.reads.items() if reads}
        result.logs = result.logs + joined.logs[: max(0, limits.max_logs - len(result.logs))]
        if result.status != "ok":
            return result
        result.call_write_sets = {c: w for c, w in joined.writes.items() if w}
        result.call_events = joined.events
        entries, size = _written((result.write_set, *result.call_write_sets.values()))
        checks = (
            ("distinct keys read", "max_read_entries",
             sum(map(len, (result.read_set, *result.call_read_sets.values())))),
            ("keys written", "max_write_entries", entries),
            ("bytes written", "max_write_bytes", size),
            ("events", "max_events", len(result.events) + len(result.call_events)),
        )
        for what, name, count in checks:
            if count > getattr(limits, name):
                return Result(result.tx_id, "trap", result.fee, b"", {
                    "kind": "limit", "message": f"the transaction's frames have {count:,} "
                    f"{what}, over {getattr(limits, name):,} ({name})"},
                    logs=result.logs, read_set=result.read_set,
                    call_read_sets=result.call_read_sets)
        return result

    def call(self, caller: Any, address: bytes, function: bytes, data: bytes,
             fee: int) -> tuple[int, bytes]:
        """Run one call for the frame `caller` (an execution: consume, left); the call's
        own price is already charged. Returns (status, result bytes)."""
        try:
            contract, name = address.decode(), function.decode()
        except UnicodeDecodeError:
            return CALL_NOT_FOUND, b""
        if name == "init":
            return CALL_NOT_FOUND, b""
        if len(self.stack) >= self.max_depth or contract in self.stack:
            return CALL_DENIED, b""
        left = caller.left
        budget = left if fee <= 0 or fee > left else fee
        remaining_ms = max(1, int((self.deadline - time.perf_counter()) * 1000))
        job = Job(self.root.tx_id, contract, name, data, budget,
                  Context(self.stack[-1], self.root.context.block_height,
                          self.root.context.block_time), self.root.mode, remaining_ms)
        below = Joined()
        self.stack.append(contract)
        self.layers.append(below)
        view = JoinedState(self.state, list(self.layers))
        try:
            result = self.run_frame(job, view)
        finally:
            self.stack.pop()
            self.layers.pop()
        if result is None:
            return CALL_NOT_FOUND, b""
        result.read_set = view.committed_versions(contract, result.read_set)
        if result.status == "timeout":
            raise Timeout((result.error or {}).get("message", "deadline"), "deadline")
        if result.status not in STATUS_OF:  # an engine failure: the transaction's
            raise InternalError((result.error or {}).get("message", result.status))
        for category, amount in sorted(result.fee.breakdown.items()):
            if amount:
                caller.consume(amount, category, "wes.call")
        status = STATUS_OF[result.status]
        if not self.layers[-1].take(contract, result, below, self.limits, caller):
            return CALL_TRAPPED, b""
        return status, result.return_data if status in (CALL_OK, CALL_REVERTED) else b""

"""A Result as the worker handles it: encoded once, in the executor.

The worker only reads a Result's tx id, status and fee used (metrics, the write
script, arq's receipt); it keeps those beside the bytes and never decodes or
re-encodes the rest. Decoding every Result from the executor and encoding it
again for Redis cost the worker more than the Redis write itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.model import Result, pack, unpack


class MalformedRow(ValueError):
    """An executor reply row that is not [tx_id, status, fee_used, data, fee]."""


@dataclass(frozen=True, slots=True)
class PackedResult:
    tx_id: str
    status: str
    fee_used: int
    data: bytes  # the msgpack wire Result, exactly as its part record holds it
    fee: bytes  # the msgpack fee map, exactly as appended to the fee stream

    @classmethod
    def of(cls, result: Result) -> PackedResult:
        data, fee = result.packed()
        return cls(result.tx_id, result.status, result.fee.used, data, fee)

    @classmethod
    def from_bytes(cls, data: bytes, tx_id: str) -> PackedResult:
        """What Redis holds under tx_id's result key. Bytes that are no Result (not the
        farm's: someone wrote them there) stand as an unreadable `error` record of that
        tx, so they fail nothing else: its neighbours' results are written and read."""
        try:
            wire = unpack(data)
            if wire["tx_id"] == tx_id:  # (another tx's Result is none of this one's)
                return cls(tx_id, wire["status"], int(wire["fee"]["used"]), data,
                           pack(wire["fee"]))
        except Exception:
            pass
        return cls(tx_id, "error", 0, data, b"")

    def row(self) -> list[Any]:
        """The executor -> worker wire form."""
        return [self.tx_id, self.status, self.fee_used, self.data, self.fee]

    @classmethod
    def from_row(cls, row: Any) -> PackedResult:
        if not (isinstance(row, list) and len(row) == 5):
            raise MalformedRow(f"result row must be a 5-item list, got {type(row).__name__}")
        tx_id, status, used, data, fee = row
        if not (isinstance(tx_id, str) and isinstance(status, str) and type(used) is int
                and isinstance(data, bytes) and isinstance(fee, bytes)):
            raise MalformedRow("result row has a field of the wrong type")
        return cls(tx_id, status, used, data, fee)

    def wire(self) -> dict[str, Any]:
        """The whole Result as a wire map (decoded on demand)."""
        decoded: dict[str, Any] = unpack(self.data)
        return decoded


@dataclass
class Outcome:
    """Results in job order; `retry` marks jobs that failed for a transient reason."""

    results: list[PackedResult]
    retry: list[bool] = field(default_factory=list)

    def part(self, index: int) -> Outcome:
        return Outcome(self.results[index : index + 1], self.retry[index : index + 1])

"""What a block commit decides and reports: per tx `Applied` (as `{p}:block:{H}:applied`
holds it), and the block's `CommitReport` (its record is `{p}:block:{H}`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.model import Result, pack, unpack
from worker.protocol import encode_version

# Not consensus results (the engine failed here): never committed, reported. Every other
# status is one, charged, and (only `ok`) its writes applied.
NOT_COMMITTED = ("timeout", "error")


@dataclass(frozen=True, slots=True)
class Applied:
    """What the commit decided for one tx, as `{p}:block:{height}:applied` holds it."""

    version: int  # of its writes; 0: it wrote nothing (or was not committed)
    status: str
    fee_used: int
    result: Result | None = None  # the re-executed result; None: the farm's stands
    data: bytes = b""  # that result as stored in its part record (packed once)
    fee_record: bytes = b""  # its fee record (Result.packed's, packed once)

    def decision(self) -> bytes:
        return bytes(pack([self.status, self.fee_used, self.data or None]))

    def entry(self) -> bytes:
        return encode_version(self.version) + self.decision()

    def at(self, version: int) -> Applied:
        """The same decision, its writes under `version`."""
        return Applied(version, self.status, self.fee_used, self.result, self.data,
                       self.fee_record)

    def result_row(self) -> tuple[bytes, bytes, str]:
        """The re-executed Result as a worker stores it: its bytes, fee record, status."""
        if self.result is None:
            raise ValueError("only a re-executed tx has a Result of its own to store")
        return self.data, self.fee_record, self.status

    @classmethod
    def decode(cls, entry: bytes) -> Applied:
        status, fee_used, data = unpack(entry[8:])
        version = int.from_bytes(entry[:8], "big")
        if data is None:
            return cls(version, status, fee_used)
        wire = unpack(data)
        return cls(version, status, fee_used, Result.from_wire(wire), data, pack(wire["fee"]))

    @classmethod
    def of(cls, result: Result, reexecuted: bool, version: int = 0) -> Applied:
        if not reexecuted:
            return cls(version, result.status, result.fee.used)
        return cls(version, result.status, result.fee.used, result, *result.packed())


@dataclass(slots=True)
class CommitReport:
    height: int
    txs: int
    committed: int = 0
    reexecuted: int = 0
    not_committed: dict[str, str] = field(default_factory=dict)  # tx id -> status / "missing"
    by_status: dict[str, int] = field(default_factory=dict)
    fee_total: int = 0
    fee_by_sender: dict[str, int] = field(default_factory=dict)
    fee_by_status: dict[str, int] = field(default_factory=dict)
    state_root: str = ""  # the root's checksum after the block (producer/state_root.py)
    version: int = 0
    # Of this run only, so not in the record: a resumed commit's differ.
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    results: Mapping[str, Result] = field(default_factory=dict)  # final (re-executed) results
    # Of `results`, the re-executed ones as packed once for Redis (Applied.data).
    packed: dict[str, bytes] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The commit record stored at `{p}:block:{height}` (and printed with --json)."""
        return {
            "height": self.height,
            "txs": self.txs,
            "committed": self.committed,
            "reexecuted": self.reexecuted,
            "not_committed": dict(sorted(self.not_committed.items())),
            "by_status": dict(sorted(self.by_status.items())),
            "fees": {
                "total": self.fee_total,
                "by_sender": dict(sorted(self.fee_by_sender.items())),
                "by_status": dict(sorted(self.fee_by_status.items())),
            },
            "state_root": self.state_root,
            "version": self.version,
        }


class CommittedResults(Mapping[str, Result]):
    """A commit's final Results by tx id, in block order: the re-executed ones kept as the
    bytes stored for them and decoded when first asked for (a block builder that reads
    the record and the fees never pays to decode a block of Results), the rest given."""

    def __init__(self, order: Iterable[str], packed: Mapping[str, bytes],
                 given: Mapping[str, Result]) -> None:
        self._order = dict.fromkeys(order)
        self._packed, self._given = packed, given
        self._decoded: dict[str, Result] = {}

    def __getitem__(self, tx_id: str) -> Result:
        if tx_id not in self._order:
            raise KeyError(tx_id)
        if tx_id not in self._packed:
            return self._given[tx_id]
        if tx_id not in self._decoded:
            self._decoded[tx_id] = Result.from_wire(unpack(self._packed[tx_id]))
        return self._decoded[tx_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

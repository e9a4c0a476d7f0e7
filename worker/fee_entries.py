"""The fee stream's entries as readers take them (worker/protocol.py exports these).

`{p}:fees` holds an entry per part a script stored (worker/result_store.py): `n` (its
records), `part` (its id) and `records`, a msgpack array of [tx id, status, fee record]
per tx it stored; `{p}:fees:known` holds hints, no records (hint_tx_ids). Entries
written before parts (one tx's `tx_id`, `fee`, `status`) and before the one field (per
tx `=`tx id -> status NUL fee) read as well. Anyone can append to the stream: what is
none of the farm's reads as no record, never as an error, so one such entry cannot fail
every reader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack


@dataclass(frozen=True, slots=True)
class FeeEntry:
    """One tx's record in the `{p}:fees` stream: exactly one per tx id."""

    stream_id: str
    tx_id: str
    fee: dict[str, Any]
    status: str = ""

    @classmethod
    def decode(cls, stream_id: bytes, fields: Mapping[bytes, bytes]) -> list[FeeEntry]:
        """The records of one stream entry (entry_records)."""
        sid = stream_id.decode()
        return [cls(sid, tx_id, _fee(fee), status)
                for tx_id, status, fee in entry_records(fields)]


def entry_records(fields: Mapping[bytes, bytes]) -> list[tuple[str, str, bytes]]:
    """(tx id, status, fee record) of each record a stream entry holds: a part's
    (`records`); as entries were written before: per tx `=`tx id -> status NUL fee, or
    one tx's (`tx_id`, `fee`, `status`). What is none of the farm's (someone wrote it)
    reads as no record: one such entry must not fail every reader of the stream."""
    try:
        if b"records" in fields:
            return [(_text(row[0]), _text(row[1]), row[2]) for row in _rows(fields)
                    if len(row) == 3 and isinstance(row[1], bytes)
                    and isinstance(row[2], bytes)]
        if b"tx_id" in fields:
            return [(_text(fields[b"tx_id"]), _text(fields.get(b"status", b"")),
                     fields.get(b"fee", b""))]
        return [(_text(name[1:]), _text(status), fee) for name, (status, _, fee) in
                ((name, value.partition(b"\x00")) for name, value in fields.items())
                if name[:1] == b"="]
    except Exception:
        return []


def _rows(fields: Mapping[bytes, bytes]) -> list[list[Any]]:
    """A part entry's `records` rows that name a tx (a list whose first item is bytes)."""
    rows = msgpack.unpackb(fields[b"records"], raw=True)
    return [row for row in rows if isinstance(row, list) and row
            and isinstance(row[0], bytes)] if isinstance(rows, list) else []


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def entry_tx_ids(fields: Sequence[bytes]) -> list[tuple[str, str | None]]:
    """(tx id, the part holding its Result) of each record of a stream entry, from its
    flat field list as Redis sends it (part None: an entry from before parts); a part's
    rows are not decoded past their tx ids."""
    named = dict(zip(fields[::2], fields[1::2], strict=False))
    if b"records" not in named:
        return [(tx_id, None) for tx_id, _, _ in entry_records(named)]
    part = named.get(b"part")
    holder = _text(part) if isinstance(part, bytes) else None
    try:
        return [(_text(row[0]), holder) for row in _rows(named)]
    except Exception:
        return []


def hint_tx_ids(fields: Sequence[bytes]) -> list[tuple[str, str | None]]:
    """(tx id, the part holding its Result) of a `{p}:fees:known` entry (its flat field
    list as Redis sends it): txs a call found stored by another part."""
    named = dict(zip(fields[::2], fields[1::2], strict=False))
    if b"known" not in named:
        return []
    try:
        flat = msgpack.unpackb(named[b"known"], raw=True)
        pairs = zip(flat[::2], flat[1::2], strict=False) if isinstance(flat, list) else ()
        return [(_text(tx), _text(part)) for tx, part in pairs
                if isinstance(tx, bytes) and isinstance(part, bytes)]
    except Exception:
        return []


def entry_statuses(fields: Mapping[bytes, bytes]) -> list[str]:
    """The statuses of a stream entry's records (its fee records left undecoded)."""
    return [status for _, status, _ in entry_records(fields)]


def _fee(raw: bytes | None) -> dict[str, Any]:
    try:
        fee = msgpack.unpackb(raw, raw=False) if raw else {}
    except Exception:  # (not a fee record of the farm's: someone wrote it)
        return {}
    return fee if isinstance(fee, dict) else {"value": fee}

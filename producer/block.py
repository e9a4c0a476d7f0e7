"""A block as the block builder hands it over: JSON lines, one transaction each.

    {"tx_id": "t1", "contract": "token", "function": "transfer",
     "input": "40420f0000000000626f62", "fee_limit": 100000, "caller": "alice"}

`input` is hex (may be empty or absent), `fee_limit` is optional (the configured
default), `caller` is optional (""), `access` is optional: a list of hex keys of the
contract the tx will read, fetched together before it runs, and `writes` too: the keys
it may write (a tx touching a key an earlier one may write is run by the commit, not
the farm: producer/schedule.py). A write list is a hint that never changes a result; a
declared key is read, and paid for, before the contract runs; at most 64 keys of 256
bytes each. Every problem is reported with its line
number, and all of them at once (up to a cap), so a bad block is fixed in one go.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidJob
from engine.model import (
    MAX_ADDRESS_BYTES,
    MAX_FUNCTION_BYTES,
    MAX_TX_ID_BYTES,
    Context,
    Job,
    access_list,
)
from worker.protocol import BATCH_JOB_PREFIX

FIELDS = ("tx_id", "contract", "function", "input", "fee_limit", "caller", "access", "writes")
MAX_REPORTED = 20


class BlockError(ValueError):
    """A block file that cannot be submitted; the message lists each bad line."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        shown = list(problems[:MAX_REPORTED])
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more")
        super().__init__(f"{source}: " + ("\n  " if len(shown) > 1 else "") + "\n  ".join(shown))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Tx:
    tx_id: str
    contract: str
    function: str
    input: bytes = b""
    fee_limit: int | None = None
    caller: str = ""
    access: tuple[bytes, ...] = ()
    writes: tuple[bytes, ...] = ()

    def job(
        self, height: int, time_ms: int, default_fee_limit: int
    ) -> Job:
        fee = self.fee_limit if self.fee_limit is not None else default_fee_limit
        return Job(
            tx_id=self.tx_id,
            contract=self.contract,
            function=self.function,
            input=self.input,
            fee_limit=fee,
            context=Context(caller=self.caller, block_height=height, block_time=time_ms),
            access=self.access,
            writes=self.writes,
        )

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "tx_id": self.tx_id,
            "contract": self.contract,
            "function": self.function,
            "input": self.input.hex(),
        }
        if self.fee_limit is not None:
            line["fee_limit"] = self.fee_limit
        if self.caller:
            line["caller"] = self.caller
        if self.access:
            line["access"] = [key.hex() for key in self.access]
        if self.writes:
            line["writes"] = [key.hex() for key in self.writes]
        return line


def _text(obj: dict[str, Any], name: str, limit: int, required: bool) -> str:
    value = obj.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        kind = "missing" if value is None else f"a {type(value).__name__}"
        raise ValueError(f"'{name}' must be a string, got {kind}")
    if required and not value:
        raise ValueError(f"'{name}' must not be empty")
    if len(value.encode()) > limit:
        raise ValueError(f"'{name}' is over {limit} bytes")
    return value


def parse_tx(text: str, max_fee_limit: int | None = None) -> Tx:
    """One JSON line -> Tx; ValueError with a message naming the field."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"unknown field(s) {names}; known: {', '.join(FIELDS)}")
    tx_id = _text(obj, "tx_id", MAX_TX_ID_BYTES, True)
    if tx_id.startswith(BATCH_JOB_PREFIX):
        raise ValueError(f"'tx_id' may not start with {BATCH_JOB_PREFIX!r} (batch job ids)")
    contract = _text(obj, "contract", MAX_ADDRESS_BYTES, True)
    function = _text(obj, "function", MAX_FUNCTION_BYTES, True)
    caller = _text(obj, "caller", MAX_ADDRESS_BYTES, False)
    raw_input = obj.get("input", "")
    if raw_input is None:
        raw_input = ""
    if not isinstance(raw_input, str):
        raise ValueError(f"'input' must be a hex string, got {type(raw_input).__name__}")
    hex_text = raw_input[2:] if raw_input[:2] in ("0x", "0X") else raw_input
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        raise ValueError(f"'input' is not valid hex: {raw_input[:40]!r}") from None
    fee = obj.get("fee_limit")
    if fee is not None:
        if not isinstance(fee, int) or isinstance(fee, bool):
            raise ValueError(f"'fee_limit' must be an integer, got {json.dumps(fee)}")
        if fee <= 0:
            raise ValueError(f"'fee_limit' must be positive, got {fee}")
        if max_fee_limit is not None and fee > max_fee_limit:
            raise ValueError(f"'fee_limit' {fee} is over the maximum {max_fee_limit}")
    return Tx(tx_id, contract, function, data, fee, caller, _access(obj.get("access")),
              _access(obj.get("writes"), "writes"))


def _access(value: Any, name: str = "access") -> tuple[bytes, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"'{name}' must be a list of hex keys")
    try:
        keys = [bytes.fromhex(k[2:] if k[:2] in ("0x", "0X") else k) for k in value]
    except ValueError:
        raise ValueError(f"'{name}' holds a key that is not valid hex") from None
    try:
        return access_list(keys, name)
    except InvalidJob as exc:
        raise ValueError(f"'{name}': {exc.message}") from None


def parse_block(
    lines: Iterable[str], source: str = "block", max_fee_limit: int | None = None
) -> list[Tx]:
    """Parse JSON lines (blank lines skipped); BlockError listing every bad line."""
    txs: list[Tx] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            tx = parse_tx(line, max_fee_limit)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        seen = first_line.setdefault(tx.tx_id, number)
        if seen != number:
            problems.append(f"line {number}: duplicate tx_id {tx.tx_id!r} (first on line {seen})")
            continue
        txs.append(tx)
    if problems:
        raise BlockError(source, problems)
    if not txs:
        raise BlockError(source, ["no transactions (the file is empty)"])
    return txs


def load_block(path: Path, max_fee_limit: int | None = None) -> list[Tx]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BlockError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise BlockError(str(path), ["not UTF-8 text"]) from None
    return parse_block(text.splitlines(), str(path), max_fee_limit)


def dump_block(txs: Iterable[Tx]) -> str:
    return "".join(json.dumps(tx.to_json(), separators=(",", ":")) + "\n" for tx in txs)

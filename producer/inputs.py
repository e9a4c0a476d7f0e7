"""What a user hands a command: a contract file (.wasm, or .wat converted), hex bytes, a
state file. Each problem is a CliError naming the file and, for WAT, the line and column."""

from __future__ import annotations

import re
from pathlib import Path

from producer.exits import CliError

_WHERE = re.compile(r"--> [^:]*:(\d+):(\d+)")


def _wat_problem(message: str) -> str:
    """wat2wasm's message in one line: what, then where (`line L, column C`)."""
    first = message.strip().splitlines()[0] if message.strip() else "cannot parse"
    where = _WHERE.search(message)
    return f"{first} at line {where[1]}, column {where[2]}" if where else first


def read_code(path: Path) -> bytes:
    """A module from a .wasm file, or a .wat file converted with wasmtime.wat2wasm."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    if path.suffix == ".wat" or (not data.startswith(b"\x00asm") and data.lstrip()[:1] == b"("):
        import wasmtime

        try:
            return bytes(wasmtime.wat2wasm(data.decode("utf-8")))
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
            raise CliError(f"{path}: not valid WAT: {_wat_problem(str(exc))}") from None
    return data


def parse_hex(text: str, what: str) -> bytes:
    body = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise CliError(f"{what} is not valid hex: {text[:40]!r}") from None

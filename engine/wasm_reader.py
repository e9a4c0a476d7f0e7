"""Reading WebAssembly binaries: LEB128 integers, sections, and the instructions of a
function body, for the policy, the compile budget and the instrumenter.

Only what ABI contracts may contain is decoded (the MVP, bulk memory, multi-value, sign
extension, non-trapping float-to-int); any other instruction is `rejected` naming the
proposal it belongs to. Malformed bytes are `invalid`. wasmtime validates the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from engine.errors import InvalidJob, Rejected

VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64"}
CONST_OPS = {0x41, 0x42, 0x43, 0x44, 0x23}  # i32/i64/f32/f64.const, global.get
NO_TYPE = -1

# Instruction immediates, by opcode (single-byte opcodes).
NONE, BLOCK, LABEL, TABLE, CALL, CALL_INDIRECT, INDEX, MEMARG, MEMORY, I32, I64, F32, F64 = (
    range(13))
_IMMEDIATE: dict[int, int] = {
    0x00: NONE, 0x01: NONE, 0x02: BLOCK, 0x03: BLOCK, 0x04: BLOCK, 0x05: NONE, 0x0B: NONE,
    0x0C: LABEL, 0x0D: LABEL, 0x0E: TABLE, 0x0F: NONE, 0x10: CALL, 0x11: CALL_INDIRECT,
    0x1A: NONE, 0x1B: NONE, 0x20: INDEX, 0x21: INDEX, 0x22: INDEX, 0x23: INDEX, 0x24: INDEX,
    0x3F: MEMORY, 0x40: MEMORY, 0x41: I32, 0x42: I64, 0x43: F32, 0x44: F64,
}
_IMMEDIATE.update(dict.fromkeys(range(0x28, 0x3F), MEMARG))  # loads and stores
_IMMEDIATE.update(dict.fromkeys(range(0x45, 0xC5), NONE))  # numeric, sign extension
# 0xFC prefix: sub-opcode -> immediates (u32 indices, then zero bytes).
_FC = {**{i: (0, 0) for i in range(8)},  # saturating float-to-int
       8: (1, 1), 9: (1, 0), 10: (0, 2), 11: (0, 1),  # memory.init/data.drop/copy/fill
       12: (2, 0), 13: (1, 0), 14: (2, 0)}  # table.init, elem.drop, table.copy
_PROPOSALS = {
    0x06: "exceptions", 0x07: "exceptions", 0x08: "exceptions", 0x09: "exceptions",
    0x18: "exceptions", 0x19: "exceptions", 0x1F: "exceptions",
    0x12: "tail calls", 0x13: "tail calls", 0x14: "function references",
    0x15: "function references", 0x1C: "reference types (typed select)",
    0x25: "reference types", 0x26: "reference types", 0xD0: "reference types",
    0xD1: "reference types", 0xD2: "reference types", 0xFB: "GC", 0xFD: "SIMD",
    0xFE: "threads (atomics)",
}


class Reader:
    """A cursor over `data[pos:end]`; every read past `end` is `invalid`."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise InvalidJob("malformed module: unexpected end of section", "bad_module")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift >= 35:
                raise InvalidJob("malformed module: LEB128 integer too long", "bad_module")

    def skip_leb(self, max_bytes: int = 10) -> None:
        for _ in range(max_bytes):
            if not self.byte() & 0x80:
                return
        raise InvalidJob("malformed module: LEB128 integer too long", "bad_module")

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise InvalidJob("malformed module: length past end of section", "bad_module")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def name(self) -> str:
        try:
            return self.take(self.u32()).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJob("malformed module: name is not UTF-8", "bad_module") from None

    def limits(self, what: str) -> tuple[int, int | None]:
        flags = self.byte()
        if flags & 0x02:
            raise Rejected(f"{what} is shared (threads are not allowed)", "feature")
        if flags & 0x04:
            raise Rejected(f"{what} is 64-bit (memory64 is not allowed)", "feature")
        if flags & ~0x01:
            raise Rejected(f"{what} has unsupported limit flags {flags:#x}", "feature")
        minimum = self.u32()
        return minimum, (self.u32() if flags & 0x01 else None)

    def const_expr(self, what: str) -> None:
        """A constant expression: one const or global.get, then `end` (no extended-const)."""
        op = self.byte()
        if op not in CONST_OPS:
            raise Rejected(f"{what} uses a non-constant or extended-const expression", "feature")
        if op == 0x43:
            self.take(4)
        elif op == 0x44:
            self.take(8)
        else:
            self.skip_leb()
        if self.byte() != 0x0B:
            raise Rejected(f"{what} uses an extended-const expression", "feature")

    def valtype(self, what: str) -> str:
        code = self.byte()
        if code not in VALTYPES:
            raise Rejected(f"{what} uses value type {code:#x} (only i32/i64/f32/f64)", "feature")
        return VALTYPES[code]


def sections(code: bytes, start: int) -> Iterator[tuple[int, Reader]]:
    """(section id, a reader over its payload) for every section after the header."""
    r = Reader(code, start)
    while r.pos < r.end:
        section_id = r.byte()
        size = r.u32()
        if r.pos + size > r.end:
            raise InvalidJob("malformed module: section past end of module", "bad_module")
        yield section_id, Reader(code, r.pos, r.pos + size)
        r.pos += size


@dataclass(slots=True)
class Instruction:
    """One decoded instruction: where it is, its opcode (0xFC sub-ops as 0xFC00 + n) and
    the one index it names, if any (a label depth, function, type, local or global; for a
    block, loop or if its type index, NO_TYPE when it has none)."""

    start: int
    end: int
    opcode: int
    index: int = 0


def instructions(r: Reader, function: int) -> Iterator[Instruction]:
    """The instructions of one function body's expression, up to and including its final
    `end`; `r` is positioned after the locals."""
    depth = 0
    while True:
        start = r.pos
        op = r.byte()
        index = 0
        kind = _IMMEDIATE.get(op)
        if kind is None:
            if op != 0xFC:
                proposal = _PROPOSALS.get(op)
                what = f"{proposal} are not allowed" if proposal else "an unknown instruction"
                raise Rejected(f"function {function} uses opcode {op:#04x}: {what}", "feature")
            sub = r.u32()
            if sub not in _FC:
                raise Rejected(f"function {function} uses opcode 0xfc {sub}: reference types "
                               "are not allowed", "feature")
            indices, zeros = _FC[sub]
            for _ in range(indices):
                index = r.u32()
            for _ in range(zeros):
                if r.byte() != 0:
                    raise InvalidJob(f"malformed module: function {function}: a reserved "
                                     "byte is not zero", "bad_module")
            yield Instruction(start, r.pos, 0xFC00 + sub, index)
            continue
        if kind == BLOCK:
            depth += 1
            b = r.byte()
            index = NO_TYPE
            if b & 0x80 or b < 0x40:  # a type index (multi-value): an s33, never negative
                r.pos -= 1
                index = r.u32()
            elif b != 0x40 and b not in VALTYPES:
                raise Rejected(f"function {function}: a block of value type {b:#x} (only "
                               "i32/i64/f32/f64)", "feature")
        elif kind in (LABEL, INDEX, CALL):
            index = r.u32()
        elif kind == TABLE:
            for _ in range(r.u32()):
                r.u32()
            index = r.u32()
        elif kind == CALL_INDIRECT:
            index = r.u32()
            if r.byte() != 0:
                raise Rejected(f"function {function}: call_indirect names a table other than "
                               "0 (reference types)", "feature")
        elif kind == MEMARG:
            if r.u32() & 0x40:
                raise Rejected(f"function {function} names a second memory (multi-memory)",
                               "feature")
            r.u32()
        elif kind == MEMORY:
            if r.byte() != 0:
                raise Rejected(f"function {function} names a second memory (multi-memory)",
                               "feature")
        elif kind == I32:
            r.skip_leb(5)
        elif kind == I64:
            r.skip_leb(10)
        elif kind == F32:
            r.take(4)
        elif kind == F64:
            r.take(8)
        yield Instruction(start, r.pos, op, index)
        if op == 0x0B:
            if depth == 0:
                return
            depth -= 1


def function_bodies(code_section: Reader) -> Iterator[tuple[int, Reader]]:
    """(function number within the code section, a reader over its body)."""
    for i in range(code_section.u32()):
        size = code_section.u32()
        if code_section.pos + size > code_section.end:
            raise InvalidJob(f"malformed module: function {i} body runs past its section",
                             "bad_module")
        yield i, Reader(code_section.data, code_section.pos, code_section.pos + size)
        code_section.pos += size


def read_locals(body: Reader, function: int) -> int:
    """Skip a body's local declarations; their total count."""
    total = 0
    for _ in range(body.u32()):
        total += body.u32()
        body.valtype(f"function {function} locals")
    return total

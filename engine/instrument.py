"""Deploy-time instrumentation: make fuel track time, charge memory growth when it grows,
and count call depth. The instrumented module is what gets compiled and cached; its
rules (the schedule's `*_fuel` prices and INSTRUMENTATION below)
are part of the engine fingerprint.

wasmtime charges one fuel for nearly every operator, but a loop back edge, a branch or a
call costs far more time than an add. The rewrite adds fuel where those are, in the
spirit of NEAR's finite-wasm and Substrate's wasm-instrument, with a padding wasmtime
counts and Cranelift deletes: `i32.const 0`, then `i32.eqz` n-1 times, then `drop` (n
fuel, n + 2 bytes, no run time).

- `loop`: the padding first thing in the body, so every iteration pays `loop_fuel`;
- `br_if`, `if`, `br_table`: `branch_fuel` before them;
- loads: `load_fuel` before each (a load may miss every cache: the time of a chain of
  them is bound by memory latency, not by the operator count);
- integer div / rem, float div / sqrt: `divide_fuel` before each (long latency);
- calls: `call_fuel` first thing in every function body (so each call, direct or
  indirect, pays it once, and the padding is not repeated at every call site), and the
  call depth counted in a global around each call (read when the execution traps:
  unwinding is paid per frame);
- `memory.grow`: a call of the engine's hook `wes_internal.memory_grow`, which charges
  the new pages before it grows (so no page can be touched before it is paid for).

The hook is appended to the imports (so every defined function's index moves up by one:
calls, exports and element segments follow) and the depth global to the globals,
exported as DEPTH_EXPORT. Custom sections are dropped (names would be stale).
"""

from __future__ import annotations

from dataclasses import dataclass

from config import FeePrices
from engine.wasm_reader import (
    Reader,
    function_bodies,
    instructions,
    read_locals,
    sections,
)

INSTRUMENTATION = 2  # bump when the rewrite changes: it joins the fingerprint
HOOK_MODULE, HOOK_GROW = "wes_internal", "memory_grow"
RESERVED_PREFIX = "__wes"  # export names the policy keeps for the engine
DEPTH_EXPORT = f"{RESERVED_PREFIX}_depth"
_HEADER = 8


def leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _vec(items: list[bytes]) -> bytes:
    return leb(len(items)) + b"".join(items)


def _name(text: str) -> bytes:
    raw = text.encode()
    return leb(len(raw)) + raw


def _section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + leb(len(payload)) + payload


def padding(fuel: int) -> bytes:
    """Stack-neutral code wasmtime charges `fuel` for and Cranelift compiles to nothing."""
    if fuel <= 0:
        return b""
    return b"\x41\x00" + b"\x45" * (fuel - 1) + b"\x1a"


# i32/i64/f32/f64 loads of every width; integer div and rem; float div and sqrt.
LOADS = frozenset(range(0x28, 0x36))
DIVIDES = frozenset((0x6D, 0x6E, 0x6F, 0x70, 0x7F, 0x80, 0x81, 0x82, 0x91, 0x95, 0x9F, 0xA3))


@dataclass(frozen=True, slots=True)
class Metering:
    loop: int
    branch: int
    call: int
    load: int = 0
    divide: int = 0

    @classmethod
    def of(cls, prices: FeePrices) -> Metering:
        return cls(prices.loop_fuel, prices.branch_fuel, prices.call_fuel, prices.load_fuel,
                   prices.divide_fuel)


class _Rewrite:
    def __init__(self, code: bytes, metering: Metering) -> None:
        self.code = code
        self.metering = metering
        self.types = self.imported = self.globals = 0
        self.hook_type = self.hook = self.depth = 0

    def shift(self, function: int) -> int:
        """A function index after the hook import was added."""
        return function + 1 if function >= self.imported else function

    def run(self) -> bytes:
        parts = [self.code[:_HEADER]]
        seen: set[int] = set()
        for section_id, s in sections(self.code, _HEADER):
            if section_id == 0:
                continue
            for missing in (1, 2, 6):  # sections the rewrite adds to, if the module has none
                if missing not in seen and section_id > missing and section_id != 12:
                    seen.add(missing)
                    parts.append(self._empty(missing))
            seen.add(section_id)
            parts.append(self._one(section_id, s))
        for missing in (1, 2, 6):
            if missing not in seen:
                parts.append(self._empty(missing))
        return b"".join(parts)

    def _empty(self, section_id: int) -> bytes:
        return self._one(section_id, Reader(b"\x00", 0, 1))

    def _one(self, section_id: int, s: Reader) -> bytes:
        if section_id == 1:
            return _section(1, self._types(s))
        if section_id == 2:
            return _section(2, self._imports(s))
        if section_id == 6:
            return _section(6, self._globals(s))
        if section_id == 7:
            return _section(7, self._exports(s))
        if section_id == 9:
            return _section(9, self._elements(s))
        if section_id == 10:
            return _section(10, self._code(s))
        return _section(section_id, s.data[s.pos : s.end])

    def _types(self, s: Reader) -> bytes:
        self.types = s.u32()
        self.hook_type = self.types
        return leb(self.types + 1) + s.data[s.pos : s.end] + b"\x60\x01\x7f\x01\x7f"

    def _imports(self, s: Reader) -> bytes:
        count = s.u32()
        start = s.pos
        for _ in range(count):
            s.name()
            s.name()
            s.byte()
            s.u32()  # only function imports pass the policy
        self.imported = count
        self.hook = count
        hook = _name(HOOK_MODULE) + _name(HOOK_GROW) + b"\x00" + leb(self.hook_type)
        return leb(count + 1) + s.data[start : s.pos] + hook

    def _globals(self, s: Reader) -> bytes:
        self.globals = s.u32()
        self.depth = self.globals
        return leb(self.globals + 1) + s.data[s.pos : s.end] + b"\x7f\x01\x41\x00\x0b"

    def _exports(self, s: Reader) -> bytes:
        out = []
        for _ in range(s.u32()):
            name, kind, index = s.name(), s.byte(), s.u32()
            out.append(_name(name) + bytes([kind]) + leb(self.shift(index) if kind == 0
                                                        else index))
        out.append(_name(DEPTH_EXPORT) + b"\x03" + leb(self.depth))
        return _vec(out)

    def _elements(self, s: Reader) -> bytes:
        out = []
        for _ in range(s.u32()):
            start = s.pos
            flags = s.u32()
            if flags == 2:
                s.u32()
            if flags in (0, 2):
                s.const_expr("element offset")
            if flags in (1, 2, 3):
                s.byte()
            head = s.data[start : s.pos]
            out.append(head + _vec([leb(self.shift(s.u32())) for _ in range(s.u32())]))
        return _vec(out)

    def _code(self, s: Reader) -> bytes:
        bodies = []
        for i, body in function_bodies(s):
            start = body.pos
            read_locals(body, i)
            out = bytearray(body.data[start : body.pos]) + padding(self.metering.call)
            self._body(body, i, out)
            bodies.append(leb(len(out)) + bytes(out))
        return _vec(bodies)

    def _body(self, body: Reader, function: int, out: bytearray) -> None:
        m = self.metering
        data = body.data
        depth_get, depth_set = b"\x23" + leb(self.depth), b"\x24" + leb(self.depth)
        enter = depth_get + b"\x41\x01\x6a" + depth_set  # depth += 1
        leave = depth_get + b"\x41\x01\x6b" + depth_set  # depth -= 1
        load_pad, divide_pad = padding(m.load), padding(m.divide)
        for ins in instructions(body, function):
            op = ins.opcode
            raw = data[ins.start : ins.end]
            if op == 0x03:
                out += raw + padding(m.loop)
            elif op in (0x04, 0x0D, 0x0E):
                out += padding(m.branch) + raw
            elif op == 0x10:
                out += enter + b"\x10" + leb(self.shift(ins.index)) + leave
            elif op == 0x11:
                out += enter + raw + leave
            elif op == 0x40:
                out += b"\x10" + leb(self.hook)
            elif op in LOADS:
                out += load_pad + raw
            elif op in DIVIDES:
                out += divide_pad + raw
            else:
                out += raw


def instrument(code: bytes, metering: Metering) -> bytes:
    """The instrumented module of a module that passed engine/policy.py."""
    return _Rewrite(code, metering).run()

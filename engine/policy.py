"""Deploy-time policy: read the module's sections and check ABI 1's rules and the limits.

wasmtime validates the code itself (and rejects disabled features); this reader
checks what wasmtime does not: imports, exports, start, entry types, sizes.
Malformed bytes are `invalid`; a well-formed module breaking a rule is `rejected`.
"""

from __future__ import annotations

from config import PolicyLimits
from engine.abi import ABI
from engine.errors import InvalidJob, Rejected
from engine.model import ModuleInfo

WASM_MAGIC = b"\x00asm\x01\x00\x00\x00"
VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64"}
CONST_OPS = {0x41, 0x42, 0x43, 0x44, 0x23}  # i32/i64/f32/f64.const, global.get


class _Reader:
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
                break
            shift += 7
            if shift > 35:
                raise InvalidJob("malformed module: LEB128 integer too long", "bad_module")
        return result

    def skip_leb(self) -> None:
        while self.byte() & 0x80:
            pass

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


def check_module(code: bytes, limits: PolicyLimits) -> ModuleInfo:
    """Raise InvalidJob (malformed) or Rejected (policy) naming the problem, else ModuleInfo."""
    if len(code) > limits.max_module_bytes:
        raise Rejected(f"module is {len(code)} bytes, limit {limits.max_module_bytes}", "too_large")
    if not code.startswith(WASM_MAGIC):
        raise InvalidJob("malformed module: not a WebAssembly 1.0 binary (bad magic/version)",
                         "bad_module")
    r = _Reader(code, len(WASM_MAGIC))
    types: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    func_types: list[int] = []
    exports: dict[str, tuple[int, int]] = {}
    memories: list[tuple[int, int | None]] = []
    table_elements = imported_funcs = tables = 0
    while r.pos < r.end:
        section_id = r.byte()
        size = r.u32()
        s = _Reader(code, r.pos, r.pos + size)
        if s.end > r.end:
            raise InvalidJob("malformed module: section past end of module", "bad_module")
        r.pos = s.end
        if section_id == 0:
            continue
        if section_id == 1:
            for _ in range(s.u32()):
                if s.byte() != 0x60:
                    raise Rejected("type section has a non-function type (GC)", "feature")
                params = tuple(s.valtype("a function type") for _ in range(s.u32()))
                results = tuple(s.valtype("a function type") for _ in range(s.u32()))
                types.append((params, results))
        elif section_id == 2:
            for _ in range(s.u32()):
                module, field, kind = s.name(), s.name(), s.byte()
                if module != "wes" or kind != 0:
                    raise Rejected(f"import {module}.{field} is not allowed: only functions "
                                   "from module 'wes'", "import")
                type_index = s.u32()
                spec = ABI.get(field)
                if spec is None:
                    raise Rejected(f"import wes.{field} is not a host function of ABI 1", "import")
                if type_index >= len(types) or types[type_index] != (spec.params, spec.results):
                    raise Rejected(f"import wes.{field} has the wrong type; ABI 1 says "
                                   f"{spec.params} -> {spec.results}", "import")
                imported_funcs += 1
                func_types.append(type_index)
        elif section_id == 3:
            func_types.extend(s.u32() for _ in range(s.u32()))
        elif section_id == 4:
            for _ in range(s.u32()):
                if s.byte() != 0x70:
                    raise Rejected("table of non-funcref elements (reference types)", "feature")
                table_elements += s.limits("table")[0]
                tables += 1
            if tables > 1:
                raise Rejected(f"module defines {tables} tables; ABI 1 allows one "
                               "(multiple tables need reference types)", "feature")
        elif section_id == 5:
            memories.extend(s.limits("memory") for _ in range(s.u32()))
        elif section_id == 6:
            count = s.u32()
            if count > limits.max_globals:
                raise Rejected(f"module has {count} globals, limit {limits.max_globals}", "limit")
            for i in range(count):
                s.valtype(f"global {i}")
                s.byte()
                s.const_expr(f"global {i} initializer")
        elif section_id == 7:
            count = s.u32()
            if count > limits.max_exports:
                raise Rejected(f"module has {count} exports, limit {limits.max_exports}", "limit")
            for _ in range(count):
                name, kind, index = s.name(), s.byte(), s.u32()
                exports[name] = (kind, index)
        elif section_id == 8:
            raise Rejected("module has a start function (not allowed by ABI 1)", "start")
        elif section_id == 9:
            _check_elements(s)
        elif section_id == 10:
            _check_code(s, limits)
        elif section_id == 11:
            _check_data(s, limits)
        elif section_id == 12:
            s.u32()
        else:
            raise Rejected(f"module has section id {section_id} (not in ABI 1)", "feature")
        if section_id in (1, 2, 3, 4, 5, 6, 7, 9, 11, 12) and s.pos != s.end:
            raise InvalidJob(f"malformed module: section {section_id} has trailing bytes",
                             "bad_module")
    return _summarize(code, types, func_types, imported_funcs, exports, memories,
                      table_elements, limits)


def _summarize(
    code: bytes,
    types: list[tuple[tuple[str, ...], tuple[str, ...]]],
    func_types: list[int],
    imported_funcs: int,
    exports: dict[str, tuple[int, int]],
    memories: list[tuple[int, int | None]],
    table_elements: int,
    limits: PolicyLimits,
) -> ModuleInfo:
    functions = len(func_types) - imported_funcs
    if functions > limits.max_functions:
        raise Rejected(f"module has {functions} functions, limit {limits.max_functions}", "limit")
    if len(memories) != 1:
        raise Rejected(f"module defines {len(memories)} memories; ABI 1 needs exactly one",
                       "memory")
    initial, maximum = memories[0]
    if initial > limits.max_memory_pages:
        raise Rejected(f"memory starts at {initial} pages, limit {limits.max_memory_pages}",
                       "limit")
    if maximum is not None and maximum > limits.max_memory_pages:
        raise Rejected(f"memory maximum is {maximum} pages, limit {limits.max_memory_pages}",
                       "limit")
    if table_elements > limits.max_table_elements:
        raise Rejected(f"tables have {table_elements} elements, limit "
                       f"{limits.max_table_elements}", "limit")
    if exports.get("memory", (None, 0))[0] != 2:
        raise Rejected("module does not export its memory as 'memory'", "memory")
    entries = []
    for name, (kind, index) in sorted(exports.items()):
        if kind != 0:
            continue
        if index >= len(func_types) or func_types[index] >= len(types):
            raise InvalidJob(f"malformed module: export {name!r} names no function", "bad_module")
        if types[func_types[index]] != ((), ()):
            raise Rejected(f"entry point {name!r} must have type () -> ()", "entry")
        entries.append(name)
    return ModuleInfo(tuple(entries), initial, table_elements, functions, len(code))


def _check_code(s: _Reader, limits: PolicyLimits) -> None:
    for i in range(s.u32()):
        size = s.u32()
        if s.pos + size > s.end:
            raise InvalidJob(f"malformed module: function {i} body runs past its section",
                             "bad_module")
        body = _Reader(s.data, s.pos, s.pos + size)
        s.pos += size
        total = 0
        for _ in range(body.u32()):
            total += body.u32()
            body.valtype(f"function {i} locals")
        if total > limits.max_locals_per_function:
            raise Rejected(f"function {i} has {total} locals, limit "
                           f"{limits.max_locals_per_function}", "limit")


def _check_data(s: _Reader, limits: PolicyLimits) -> None:
    total = 0
    for i in range(s.u32()):
        flags = s.u32()
        if flags == 2:
            s.u32()
        if flags in (0, 2):
            s.const_expr(f"data segment {i} offset")
        elif flags != 1:
            raise InvalidJob(f"malformed module: data segment {i} flags {flags}", "bad_module")
        size = s.u32()
        s.take(size)
        total += size
    if total > limits.max_data_bytes:
        raise Rejected(f"data segments hold {total} bytes, limit {limits.max_data_bytes}", "limit")


def _check_elements(s: _Reader) -> None:
    for i in range(s.u32()):
        flags = s.u32()
        if flags > 3:
            raise Rejected(f"element segment {i} uses expressions (reference types)", "feature")
        if flags == 2:
            s.u32()
        if flags in (0, 2):
            s.const_expr(f"element segment {i} offset")
        if flags in (1, 2, 3) and s.byte() != 0x00:
            raise Rejected(f"element segment {i} is not of function indices", "feature")
        for _ in range(s.u32()):
            s.u32()

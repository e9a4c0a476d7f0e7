"""Deploy-time policy: read the module's sections and check the ABI's rules and the limits.

wasmtime validates the code itself (and rejects disabled features); this reader checks
what wasmtime does not: imports, exports, start, memory, sizes, segments and the compile
budget's first limit (the budget itself is checked on the instrumented module,
engine/budget.py). Malformed bytes are `invalid`; a well-formed module breaking a
rule is `rejected`.
"""

from __future__ import annotations

from config import PolicyLimits
from engine.abi import ABI
from engine.errors import InvalidJob, Rejected
from engine.instrument import RESERVED_PREFIX
from engine.model import ModuleInfo
from engine.wasm_reader import Reader, sections

WASM_MAGIC = b"\x00asm\x01\x00\x00\x00"
FuncType = tuple[tuple[str, ...], tuple[str, ...]]


class _Module:
    """What the section checks gather for the summary."""

    def __init__(self) -> None:
        self.types: list[FuncType] = []
        self.func_types: list[int] = []
        self.imported_funcs = 0
        self.exports: dict[str, tuple[int, int]] = {}
        self.memories: list[tuple[int, int | None]] = []
        self.table_elements = 0
        self.tables = 0



def check_module(code: bytes, limits: PolicyLimits) -> ModuleInfo:
    """Raise InvalidJob (malformed) or Rejected (policy) naming the problem, else ModuleInfo."""
    if len(code) > limits.max_module_bytes:
        raise Rejected(f"module is {len(code)} bytes, limit {limits.max_module_bytes}", "too_large")
    if not code.startswith(WASM_MAGIC):
        raise InvalidJob("malformed module: not a WebAssembly 1.0 binary (bad magic/version)",
                         "bad_module")
    m = _Module()
    for section_id, s in sections(code, len(WASM_MAGIC)):
        if section_id == 0:
            continue
        if section_id == 1:
            _types(s, m)
        elif section_id == 2:
            _imports(s, m)
        elif section_id == 3:
            m.func_types.extend(s.u32() for _ in range(s.u32()))
        elif section_id == 4:
            _tables(s, m)
        elif section_id == 5:
            m.memories.extend(s.limits("memory") for _ in range(s.u32()))
        elif section_id == 6:
            _globals(s, limits)
        elif section_id == 7:
            _exports(s, m, limits)
        elif section_id == 8:
            raise Rejected("module has a start function (not allowed by the ABI)", "start")
        elif section_id == 9:
            _elements(s, limits)
        elif section_id == 10:
            size = s.end - s.pos  # the whole budget is checked once instrumented
            if size > limits.max_code_bytes:
                raise Rejected(f"the code section is {size:,} bytes, over the compile "
                               f"budget's max_code_bytes ({limits.max_code_bytes:,})",
                               "compile_budget")
            s.pos = s.end
        elif section_id == 11:
            _data(s, limits)
        elif section_id == 12:
            s.u32()
        else:
            raise Rejected(f"module has section id {section_id} (not in the ABI)", "feature")
        if s.pos != s.end:
            raise InvalidJob(f"malformed module: section {section_id} has trailing bytes",
                             "bad_module")
    return _summarize(code, m, limits)


def _types(s: Reader, m: _Module) -> None:
    for _ in range(s.u32()):
        if s.byte() != 0x60:
            raise Rejected("type section has a non-function type (GC)", "feature")
        params = tuple(s.valtype("a function type") for _ in range(s.u32()))
        results = tuple(s.valtype("a function type") for _ in range(s.u32()))
        m.types.append((params, results))


def _imports(s: Reader, m: _Module) -> None:
    for _ in range(s.u32()):
        module, field, kind = s.name(), s.name(), s.byte()
        if module != "wes" or kind != 0:
            raise Rejected(f"import {module}.{field} is not allowed: only functions from "
                           "module 'wes'", "import")
        type_index = s.u32()
        spec = ABI.get(field)
        if spec is None:
            raise Rejected(f"import wes.{field} is not a host function of the ABI", "import")
        if type_index >= len(m.types) or m.types[type_index] != (spec.params, spec.results):
            raise Rejected(f"import wes.{field} has the wrong type; the ABI says "
                           f"{spec.params} -> {spec.results}", "import")
        m.imported_funcs += 1
        m.func_types.append(type_index)


def _tables(s: Reader, m: _Module) -> None:
    for _ in range(s.u32()):
        if s.byte() != 0x70:
            raise Rejected("table of non-funcref elements (reference types)", "feature")
        m.table_elements += s.limits("table")[0]
        m.tables += 1
    if m.tables > 1:
        raise Rejected(f"module defines {m.tables} tables; the ABI allows one (multiple "
                       "tables need reference types)", "feature")


def _globals(s: Reader, limits: PolicyLimits) -> None:
    count = s.u32()
    if count > limits.max_globals:
        raise Rejected(f"module has {count} globals, limit {limits.max_globals}", "limit")
    for i in range(count):
        s.valtype(f"global {i}")
        s.byte()
        s.const_expr(f"global {i} initializer")


def _exports(s: Reader, m: _Module, limits: PolicyLimits) -> None:
    count = s.u32()
    if count > limits.max_exports:
        raise Rejected(f"module has {count} exports, limit {limits.max_exports}", "limit")
    for _ in range(count):
        name, kind, index = s.name(), s.byte(), s.u32()
        if name.startswith(RESERVED_PREFIX):
            raise Rejected(f"export {name!r}: names starting with {RESERVED_PREFIX!r} "
                           "are the engine's", "export")
        m.exports[name] = (kind, index)


def _summarize(code: bytes, m: _Module, limits: PolicyLimits) -> ModuleInfo:
    functions = len(m.func_types) - m.imported_funcs
    if functions > limits.max_functions:
        raise Rejected(f"module has {functions} functions, limit {limits.max_functions}", "limit")
    if len(m.memories) != 1:
        raise Rejected(f"module defines {len(m.memories)} memories; the ABI needs exactly one",
                       "memory")
    # A declared maximum above the limit is fine: growth stops at the limit.
    initial, declared_max = m.memories[0]
    memory_max = min(limits.max_memory_pages, 65_536 if declared_max is None else declared_max)
    if initial > limits.max_memory_pages:
        raise Rejected(f"memory starts at {initial} pages, limit {limits.max_memory_pages}",
                       "limit")
    if m.table_elements > limits.max_table_elements:
        raise Rejected(f"tables have {m.table_elements} elements, limit "
                       f"{limits.max_table_elements}", "limit")
    if m.exports.get("memory", (None, 0))[0] != 2:
        raise Rejected("module does not export its memory as 'memory'", "memory")
    entries = []
    for name, (kind, index) in sorted(m.exports.items()):
        if kind != 0:
            continue
        if index >= len(m.func_types) or m.func_types[index] >= len(m.types):
            raise InvalidJob(f"malformed module: export {name!r} names no function", "bad_module")
        if m.types[m.func_types[index]] == ((), ()):  # other exports are not entry points
            entries.append(name)
    init = m.exports.get("init")
    if init is not None and init[0] == 0:
        aliases = sorted(n for n, (kind, index) in m.exports.items()
                         if kind == 0 and index == init[1] and n != "init")
        if aliases:
            raise Rejected(f"`init` is also exported as {aliases[0]!r}: it runs once, at "
                           "deploy, so no other name may reach it", "export")
    return ModuleInfo(tuple(entries), initial, m.table_elements, functions, len(code),
                      memory_max)


def _data(s: Reader, limits: PolicyLimits) -> None:
    total = 0
    count = s.u32()
    if count > limits.max_data_segments:
        raise Rejected(f"module has {count:,} data segments, over the compile budget's "
                       f"max_data_segments ({limits.max_data_segments:,})", "compile_budget")
    for i in range(count):
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


def _elements(s: Reader, limits: PolicyLimits) -> None:
    count = s.u32()
    if count > limits.max_element_segments:
        raise Rejected(f"module has {count:,} element segments, over the compile budget's "
                       f"max_element_segments ({limits.max_element_segments:,})",
                       "compile_budget")
    for i in range(count):
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

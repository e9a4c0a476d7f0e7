"""The compile budget: what a module may ask of the compiler, checked before it compiles.

Cranelift's time grows faster than the code: with the number of locals live across many
blocks, and above all across nested loops (a small function of many locals in deeply
nested loops takes minutes and GBs). So besides the size of the code and of each body,
the budget bounds a function's locals, its locals × body bytes ("weight"), the sum of
those weights over the module, and how deeply loops nest. docs/FEES.md has the
measurements that set each limit; `bench` reports the slowest module under them. It is
checked on the module as instrumented, which is what compiles. Every rejection names the
limit. engine/compile_sandbox.py is the wall behind it.
"""

from __future__ import annotations

from config import PolicyLimits
from engine.errors import Rejected
from engine.wasm_reader import (
    NO_TYPE,
    Reader,
    function_bodies,
    instructions,
    read_locals,
    sections,
)

LOOP, OTHER = True, False
_HEADER = 8


def _over(what: str, value: int, limit: int, setting: str) -> Rejected:
    return Rejected(f"{what} is {value:,}, over the compile budget's {setting} ({limit:,})",
                    "compile_budget")


def check_budget(code: bytes, limits: PolicyLimits) -> None:
    """Check the compile budget of `code` as it will be compiled (instrumented: the
    instrumentation's additions cost compile time too). Parameters and the values a
    multi-value block takes and leaves are locals to the compiler, so they count."""
    arity: list[int] = []  # per type: params + results
    params: list[int] = []  # per defined function
    func_types: list[int] = []
    imported = 0
    for section_id, s in sections(code, _HEADER):
        if section_id == 1:
            for _ in range(s.u32()):
                s.byte()
                p = s.u32()
                s.take(p)
                r = s.u32()
                s.take(r)
                arity.append(p + r)
                params.append(p)
        elif section_id == 2:
            for _ in range(s.u32()):
                s.name()
                s.name()
                s.byte()
                func_types.append(s.u32())
            imported = len(func_types)
        elif section_id == 3:
            func_types.extend(s.u32() for _ in range(s.u32()))
        elif section_id == 10:
            _check_code(s, limits, [params[t] for t in func_types[imported:]], arity)


def _check_code(section: Reader, limits: PolicyLimits, params: list[int],
                arity: list[int]) -> None:
    size = section.end - section.pos
    if size > limits.max_code_bytes:
        raise _over("the code section (instrumented)", size, limits.max_code_bytes,
                    "max_code_bytes")
    module_weight = 0
    for i, body in function_bodies(section):
        body_bytes = body.end - body.pos
        if body_bytes > limits.max_function_bytes:
            raise _over(f"function {i}'s body (instrumented)", body_bytes,
                        limits.max_function_bytes, "max_function_bytes")
        declared = read_locals(body, i)
        if declared > limits.max_locals_per_function:
            raise Rejected(f"function {i} has {declared} locals, limit "
                           f"{limits.max_locals_per_function}", "limit")
        block_values, nesting = _blocks(body, i, arity)
        weight = (declared + params[i] + block_values + 1) * body_bytes
        if weight > limits.max_function_weight:
            raise _over(f"function {i}'s locals × body bytes", weight,
                        limits.max_function_weight, "max_function_weight")
        if nesting > limits.max_loop_depth:
            raise _over(f"function {i}'s loop nesting", nesting, limits.max_loop_depth,
                        "max_loop_depth")
        module_weight += weight
        if module_weight > limits.max_module_weight:
            raise _over("the module's locals × body bytes", module_weight,
                        limits.max_module_weight, "max_module_weight")


def _blocks(body: Reader, function: int, arity: list[int]) -> tuple[int, int]:
    """The most values a block of the body takes and leaves, and its deepest loop nesting."""
    blocks: list[bool] = []
    loops = most = deepest = 0
    for ins in instructions(body, function):
        op = ins.opcode
        if op in (0x02, 0x03, 0x04):
            if ins.index != NO_TYPE:
                most = max(most, arity[ins.index])
            blocks.append(LOOP if op == 0x03 else OTHER)
            if op == 0x03:
                loops += 1
                deepest = max(deepest, loops)
        elif op == 0x0B and blocks and blocks.pop() is LOOP:
            loops -= 1
    return most, deepest

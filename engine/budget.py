"""The compile budget: what a module may ask of the compiler, checked before it compiles.

Cranelift's time grows faster than the code: with the number of locals live across many
blocks, and above all across nested loops (a small function of many locals in deeply
nested loops takes minutes and GBs). So besides the size of the code and of each body,
the budget bounds a function's locals, its locals × body bytes ("weight"), the sum of
those weights over the module, and how deeply loops nest. docs/FEES.md has the
measurements that set each limit; `bench` reports the slowest module under them.
Every rejection names the limit. engine/compile_sandbox.py is the wall behind it.
"""

from __future__ import annotations

from config import PolicyLimits
from engine.errors import Rejected
from engine.wasm_reader import Reader, function_bodies, instructions, read_locals

LOOP, OTHER = True, False


def _over(what: str, value: int, limit: int, setting: str) -> Rejected:
    return Rejected(f"{what} is {value:,}, over the compile budget's {setting} ({limit:,})",
                    "compile_budget")


def check_code(section: Reader, limits: PolicyLimits, params: list[int]) -> None:
    """Check the code section; `params[i]` is the parameter count of defined function i
    (parameters are locals to the compiler too)."""
    size = section.end - section.pos
    if size > limits.max_code_bytes:
        raise _over("the code section", size, limits.max_code_bytes, "max_code_bytes")
    module_weight = 0
    for i, body in function_bodies(section):
        body_bytes = body.end - body.pos
        if body_bytes > limits.max_function_bytes:
            raise _over(f"function {i}'s body", body_bytes, limits.max_function_bytes,
                        "max_function_bytes")
        declared = read_locals(body, i)
        if declared > limits.max_locals_per_function:
            raise Rejected(f"function {i} has {declared} locals, limit "
                           f"{limits.max_locals_per_function}", "limit")
        weight = (declared + (params[i] if i < len(params) else 0) + 1) * body_bytes
        if weight > limits.max_function_weight:
            raise _over(f"function {i}'s locals × body bytes", weight,
                        limits.max_function_weight, "max_function_weight")
        module_weight += weight
        if module_weight > limits.max_module_weight:
            raise _over("the module's locals × body bytes", module_weight,
                        limits.max_module_weight, "max_module_weight")
        _check_nesting(body, i, limits.max_loop_depth)


def _check_nesting(body: Reader, function: int, max_loop_depth: int) -> None:
    blocks: list[bool] = []
    loops = 0
    for ins in instructions(body, function):
        op = ins.opcode
        if op == 0x03:
            blocks.append(LOOP)
            loops += 1
            if loops > max_loop_depth:
                raise _over(f"function {function}'s loop nesting", loops, max_loop_depth,
                            "max_loop_depth")
        elif op in (0x02, 0x04):
            blocks.append(OTHER)
        elif op == 0x0B and blocks and blocks.pop() is LOOP:
            loops -= 1

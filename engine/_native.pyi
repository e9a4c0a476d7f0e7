"""Types of engine._native (engine/native/*.c): the ABI's host functions and fee meter in C."""

from typing import Any

FUNCTIONS: dict[str, tuple[int, str, str]]  # name -> (address, signature, capability)
CAPABILITIES: tuple[str, ...]
CATEGORIES: tuple[str, ...]

def load(library_path: str, sizeof_extern: int, sizeof_func: int) -> None: ...

class ExecutionState:
    limit: int
    used: int
    pages_charged: int
    return_data: bytes
    events: list[tuple[bytes, bytes]]
    logs: list[bytes]
    read_set: dict[bytes, int]
    writes: dict[bytes, bytes | None]
    pending: BaseException | None
    @property
    def breakdown(self) -> dict[str, int]: ...
    @property
    def left(self) -> int: ...
    def consume(self, amount: int, category: str, reason: str | None = None) -> None: ...
    def exhaust(self, category: str) -> None: ...
    def attach(self, warm: Any, pages: int, max_pages: int) -> None: ...
    def settle(self) -> None: ...

class Host:
    def __init__(self, prices: tuple[int, ...], limits: tuple[int, ...],
                 callbacks: tuple[Any, ...]) -> None: ...
    def execution(self, job: Any, state: Any, denied: int) -> ExecutionState: ...
    def call(self, execution: ExecutionState, instance: int, entry: bytes,
             ticks: int) -> bool | tuple[int, int] | None: ...

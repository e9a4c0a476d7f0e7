"""Deterministic, fee-metered WebAssembly contract execution on wasmtime (no Redis, no asyncio)."""

from engine.adapter import ENGINES, EngineAdapter, initialize
from engine.errors import (
    STATUSES,
    ContractTrap,
    ExecutionError,
    InternalError,
    InvalidJob,
    OutOfFee,
    Rejected,
    Reverted,
    Timeout,
)
from engine.model import Context, FeeReport, Job, Result, pack, unpack
from engine.runtime import WasmEngine
from engine.state import CodeSource, MemoryCode, MemoryState, StateView

__all__ = [
    "ENGINES", "STATUSES", "CodeSource", "Context", "ContractTrap", "EngineAdapter",
    "ExecutionError", "FeeReport", "InternalError", "InvalidJob", "Job", "MemoryCode",
    "MemoryState", "OutOfFee", "Rejected", "Result", "Reverted", "StateView", "Timeout",
    "WasmEngine", "initialize", "pack", "unpack",
]

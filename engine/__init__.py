"""Deterministic, fee-metered WebAssembly contract execution on wasmtime (no Redis, no asyncio).

The public API: WasmEngine (validate, precompile, execute), the Job/Result model, the
state-view protocols and in-memory versions, the error taxonomy, and the compile
toolkit (policy check, engine config, compile, fingerprint, artifact cache).
"""

from engine.abi import ABI, CAPABILITIES
from engine.adapter import ENGINES, EngineAdapter, initialize
from engine.compiler import ArtifactCache, build_config, compile_module, fingerprint
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
from engine.model import Context, FeeReport, Job, ModuleInfo, Result, pack, unpack
from engine.policy import check_module
from engine.runtime import WasmEngine
from engine.state import CodeSource, MemoryCode, MemoryState, StateView

__all__ = [
    "ABI", "CAPABILITIES", "ENGINES", "STATUSES", "ArtifactCache", "CodeSource", "Context",
    "ContractTrap", "EngineAdapter", "ExecutionError", "FeeReport", "InternalError",
    "InvalidJob", "Job", "MemoryCode", "MemoryState", "ModuleInfo", "OutOfFee", "Rejected",
    "Result", "Reverted", "StateView", "Timeout", "WasmEngine", "build_config", "check_module",
    "compile_module", "fingerprint", "initialize", "pack", "unpack",
]
